#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "deformer/squad.h"
#include "text/squad_unicode_tables.h"
#include "test_data.h"

namespace deformer::squad {
namespace {

using nlohmann::json;

std::string three_decimals(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f", x);
  return buffer;
}

std::string predictions_dir() { return testing::data_dir() + "/squad/predictions-v1.1"; }
std::string squad_v2_half() { return testing::data_dir() + "/squad/dev-v2.0-half.json"; }

// A scratch directory outside the repository for files the tests write.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() / ("deformer_squad_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { deformer::testing::remove_tree(path_.string()); }
  std::string write(const std::string& name, const std::string& content) const {
    const auto file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

 private:
  std::filesystem::path path_;
};

template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

// ---------------------------------------------------------------------------------------------------
// Acceptance: every row of predictions-v1.1/EXPECTED_SCORES.md, through what `deformer-qa score` calls.

struct ExpectedRow {
  const char* file;
  const char* exact;
  const char* f1;
  std::size_t missing;
  std::size_t ignored;
};

void PrintTo(const ExpectedRow& row, std::ostream* os) { *os << row.file; }

class ExpectedScores : public ::testing::TestWithParam<ExpectedRow> {};

TEST_P(ExpectedScores, ReproducedToThreeDecimals) {
  const ExpectedRow& row = GetParam();
  const std::string predictions = predictions_dir() + "/" + row.file;
  DEFORMER_REQUIRE_FILE(testing::squad_dev_v11());
  DEFORMER_REQUIRE_FILE(predictions);
  const EvaluationResult result = evaluate_files(testing::squad_dev_v11(), predictions);
  EXPECT_EQ(result.metric, MetricVersion::v1_1);
  EXPECT_EQ(three_decimals(result.overall.exact), row.exact);
  EXPECT_EQ(three_decimals(result.overall.f1), row.f1);
  EXPECT_EQ(result.overall.total, 10570u);
  EXPECT_EQ(result.missing_predictions, row.missing);
  EXPECT_EQ(result.ignored_predictions, row.ignored);
  EXPECT_FALSE(result.has_answer || result.no_answer || result.best);
  const std::string text = to_text(result);
  EXPECT_NE(text.find(std::string("EM ") + row.exact + "  F1 " + row.f1), std::string::npos) << text;
}

INSTANTIATE_TEST_SUITE_P(Leaderboard, ExpectedScores,
                         ::testing::Values(ExpectedRow{"bert-ensemble.json", "86.206", "92.196", 0, 0},
                                           ExpectedRow{"match-lstm.json", "67.635", "76.756", 0, 0},
                                           ExpectedRow{"logistic-regression.json", "40.142", "50.982", 13, 28}),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           name = name.substr(0, name.find('.'));
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

// ---------------------------------------------------------------------------------------------------
// Reading

TEST(SquadReader, DevV11HasTheDocumentedCounts) {
  DEFORMER_REQUIRE_FILE(testing::squad_dev_v11());
  const Dataset dataset = read_dataset(testing::squad_dev_v11());
  EXPECT_EQ(dataset.version, "1.1");
  EXPECT_FALSE(dataset.is_v2());
  EXPECT_EQ(dataset.articles.size(), 48u);
  std::size_t paragraphs = 0, answers = 0;
  for (const auto& article : dataset.articles) {
    paragraphs += article.paragraphs.size();
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) answers += question.answers.size();
  }
  EXPECT_EQ(paragraphs, 2067u);
  EXPECT_EQ(dataset.num_questions(), 10570u);
  EXPECT_EQ(answers, 34726u);
  const Question& first = dataset.articles[0].paragraphs[0].questions[0];
  const Answer& answer = first.answers[0];
  // answer_start is a character offset; the first article is ASCII, so bytes and characters agree.
  EXPECT_EQ(dataset.articles[0].paragraphs[0].context.substr(answer.answer_start, answer.text.size()), answer.text);
}

TEST(SquadReader, V2HalfDevIsRecognisedAsV2) {
  DEFORMER_REQUIRE_FILE(squad_v2_half());
  const Dataset dataset = read_dataset(squad_v2_half());
  EXPECT_TRUE(dataset.is_v2());
  EXPECT_EQ(dataset.num_questions(), 6078u);
  std::size_t impossible = 0, unanswered = 0;
  for (const auto& article : dataset.articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) {
        impossible += question.is_impossible;
        unanswered += question.answers.empty();
        EXPECT_EQ(question.is_impossible, question.answers.empty()) << question.id;
      }
  EXPECT_EQ(impossible, 3168u);
  EXPECT_EQ(unanswered, 3168u);
}

TEST(SquadReader, ParsesAMinimalFileAndItsOptionalFields) {
  const Dataset d = parse_dataset(R"({"data": [{"paragraphs": [{"context": "Caf\u00e9 X",
      "qas": [{"id": "q1", "question": "Where?", "answers": [{"text": "X"}], "is_impossible": false}]}]}]})");
  EXPECT_EQ(d.version, "");
  ASSERT_EQ(d.num_questions(), 1u);
  EXPECT_EQ(d.articles[0].title, "");
  EXPECT_EQ(d.articles[0].paragraphs[0].context, "Caf\xc3\xa9 X");
  EXPECT_EQ(d.articles[0].paragraphs[0].questions[0].answers[0].answer_start, -1);
  EXPECT_FALSE(d.is_v2());
}

// ---------------------------------------------------------------------------------------------------
// Errors

TEST(SquadErrors, MissingFileIsARuntimeErrorNamingThePath) {
  EXPECT_THROW(read_dataset("/nonexistent/dev.json"), std::runtime_error);
  const std::string message = error_message([] { read_dataset("/nonexistent/dev.json"); });
  EXPECT_NE(message.find("/nonexistent/dev.json"), std::string::npos) << message;
  EXPECT_THROW(read_predictions("/nonexistent/preds.json"), std::runtime_error);
  EXPECT_THROW(read_na_probs("/nonexistent/na.json"), std::runtime_error);
  EXPECT_THROW(evaluate_files("/nonexistent/dev.json", "/nonexistent/preds.json"), std::runtime_error);
  TempDir dir;
  const std::string directory = std::filesystem::path(dir.write("x", "")).parent_path().string();
  EXPECT_NE(error_message([&] { read_dataset(directory); }).find("is a directory"), std::string::npos);
}

TEST(SquadErrors, MalformedJsonNamesTheProblem) {
  TempDir dir;
  const std::string file = dir.write("bad.json", "{\"data\": [\n  {\"paragraphs\": }\n]}");
  const std::string message = error_message([&] { read_dataset(file); });
  EXPECT_NE(message.find(file), std::string::npos) << message;
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("line 2"), std::string::npos) << message;
  EXPECT_THROW(parse_dataset(""), std::runtime_error);
  EXPECT_THROW(parse_predictions("{\"q\": \"a\""), std::runtime_error);
}

TEST(SquadErrors, WrongLayoutNamesThePlace) {
  const std::string missing_id = error_message([] {
    parse_dataset(R"({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q", "answers": []}]}]}]})");
  });
  EXPECT_NE(missing_id.find("data[0].paragraphs[0].qas[0]"), std::string::npos) << missing_id;
  EXPECT_NE(missing_id.find("missing \"id\""), std::string::npos) << missing_id;
  const std::string bad_text = error_message([] {
    parse_dataset(R"({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": 3}]}]}]}]})");
  });
  EXPECT_NE(bad_text.find("data[0].paragraphs[0].qas[0].answers[0]"), std::string::npos) << bad_text;
  EXPECT_THROW(parse_dataset(R"([1, 2])"), std::runtime_error);
  EXPECT_THROW(parse_dataset(R"({"version": "1.1"})"), std::runtime_error);
  const std::string bad_prediction = error_message([] { parse_predictions(R"({"q1": "x", "q2": ["y"]})"); });
  EXPECT_NE(bad_prediction.find("q2"), std::string::npos) << bad_prediction;
  EXPECT_THROW(parse_na_probs(R"({"q1": "high"})"), std::runtime_error);
}

TEST(SquadErrors, NonUtf8IsRejectedWithTheByteOffset) {
  TempDir dir;
  // A Latin-1 'é' (0xE9 followed by an ASCII byte) at byte 28.
  const std::string text = "{\"data\": [], \"version\": \"caf\xe9\"}";
  ASSERT_EQ(text.find('\xe9'), 28u);
  const std::string file = dir.write("latin1.json", text);
  const std::string message = error_message([&] { read_dataset(file); });
  EXPECT_NE(message.find("UTF-8"), std::string::npos) << message;
  EXPECT_NE(message.find("byte offset 28"), std::string::npos) << message;
  // Overlong encodings and encoded surrogates are not UTF-8 either.
  EXPECT_THROW(parse_predictions("{\"q\": \"\xc0\xaf\"}"), std::runtime_error);
  EXPECT_THROW(parse_predictions("{\"q\": \"\xed\xa0\x80\"}"), std::runtime_error);
  EXPECT_NO_THROW(parse_predictions("{\"q\": \"\xf0\x9f\x98\x80\"}"));
  EXPECT_THROW(normalize_answer("ab\xc3"), std::invalid_argument);
  EXPECT_NE(error_message([] { normalize_answer("ab\xc3"); }).find("byte offset 2"), std::string::npos);
}

TEST(SquadErrors, CallerErrorsAreInvalidArgument) {
  const Dataset v2 = parse_dataset(R"({"version": "v2.0", "data": [{"paragraphs": [{"context": "c", "qas": [
      {"id": "q1", "question": "q", "answers": [], "is_impossible": true},
      {"id": "q2", "question": "q", "answers": [{"text": "c", "answer_start": 0}]}]}]}]})");
  const Predictions predictions{{"q1", ""}, {"q2", "c"}};
  const NoAnswerProbabilities partial = parse_na_probs(R"({"q1": 0.5})");
  EXPECT_THROW(evaluate(v2, predictions, &partial), std::invalid_argument);
  EvaluationOptions v11;
  v11.metric = MetricVersion::v1_1;
  EXPECT_THROW(evaluate(v2, predictions, nullptr, v11), std::invalid_argument);  // q1 has no gold answer
  const NoAnswerProbabilities full = parse_na_probs(R"({"q1": 0.5, "q2": 0.1})");
  EXPECT_THROW(evaluate(v2, predictions, &full, v11), std::invalid_argument);
  EXPECT_NO_THROW(evaluate(v2, predictions, &full));
}

// ---------------------------------------------------------------------------------------------------
// Normalisation and the per-answer scores

TEST(SquadNormalize, Punctuation) {
  EXPECT_EQ(normalize_answer("U.S.A."), "usa");
  EXPECT_EQ(normalize_answer("rock'n'roll"), "rocknroll");
  EXPECT_EQ(normalize_answer("snake_case, (x) [y] {z}!?"), "snakecase x y z");
  EXPECT_EQ(normalize_answer("$1,000.50"), "100050");
  // Only ASCII punctuation goes: typographic quotes and dashes stay, as in the official script.
  EXPECT_EQ(normalize_answer("\xe2\x80\x9cquoted\xe2\x80\x9d"), "\xe2\x80\x9cquoted\xe2\x80\x9d");
  EXPECT_EQ(normalize_answer("Arab\xe2\x80\x93Israeli"), "arab\xe2\x80\x93israeli");
  EXPECT_EQ(normalize_answer("."), "");
}

TEST(SquadNormalize, Articles) {
  EXPECT_EQ(normalize_answer("The Quick, Brown FOX"), "quick brown fox");
  EXPECT_EQ(normalize_answer("a an the A AN THE"), "");
  EXPECT_EQ(normalize_answer("theater anthem another"), "theater anthem another");
  EXPECT_EQ(normalize_answer("the-end"), "theend");  // punctuation goes first, so no article is left
  EXPECT_EQ(normalize_answer("the.a"), "thea");
  EXPECT_EQ(normalize_answer("a_b"), "ab");
  EXPECT_EQ(normalize_answer("(the) cat"), "cat");
  // \b is Unicode: a letter with a diacritic is a word character, a combining mark is not.
  EXPECT_EQ(normalize_answer("\xc3\xa9" "a the\xc3\xa9"), "\xc3\xa9" "a the\xc3\xa9");
  EXPECT_EQ(normalize_answer("\xcc\x81" "a"), "\xcc\x81");
  EXPECT_EQ(normalize_answer("1a a1 _a"), "1a a1");
}

TEST(SquadNormalize, UnicodeLowerCaseIsPythons) {
  EXPECT_EQ(normalize_answer("\xc3\x89" "COLE"), "\xc3\xa9" "cole");  // ÉCOLE -> école
  EXPECT_EQ(normalize_answer("\xc3\x89"), "\xc3\xa9");                 // É -> é
  EXPECT_EQ(normalize_answer("\xd0\x9c\xd0\x9e\xd0\xa1\xd0\x9a\xd0\x92\xd0\x90"),
            "\xd0\xbc\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0");  // МОСКВА -> москва
  EXPECT_EQ(normalize_answer("\xc4\xb0stanbul"), "i\xcc\x87stanbul");  // İ -> i + combining dot
  EXPECT_EQ(normalize_answer("\xc7\x85"), "\xc7\x86");                 // titlecase ǅ -> ǆ
  EXPECT_EQ(normalize_answer("\xef\xbc\xa1"), "\xef\xbd\x81");        // fullwidth Ａ -> ａ
  EXPECT_EQ(normalize_answer("\xf0\x90\x90\x80"), "\xf0\x90\x90\xa8");  // Deseret, outside the BMP
  // Final sigma: ΟΔΟΣ -> οδος with ς, but a lone Σ and one inside a word stay σ.
  EXPECT_EQ(normalize_answer("\xce\x9f\xce\x94\xce\x9f\xce\xa3"), "\xce\xbf\xce\xb4\xce\xbf\xcf\x82");
  EXPECT_EQ(normalize_answer("\xce\xa3"), "\xcf\x83");
  EXPECT_EQ(normalize_answer("\xce\xa3\xce\x91"), "\xcf\x83\xce\xb1");
  EXPECT_EQ(normalize_answer("\xce\x91\xce\xa3\xcc\x81 x"), "\xce\xb1\xcf\x82\xcc\x81 x");
}

TEST(SquadNormalize, UnicodeWhitespaceCollapses) {
  EXPECT_EQ(normalize_answer("  x \t\n y\r\n"), "x y");
  EXPECT_EQ(normalize_answer("x\xc2\xa0y"), "x y");          // no-break space
  EXPECT_EQ(normalize_answer("x\xe3\x80\x80y"), "x y");      // ideographic space
  EXPECT_EQ(normalize_answer("x\xe2\x80\xa8y\x1cz"), "x y z");  // line separator, file separator
  EXPECT_EQ(normalize_answer("x\xe2\x80\x8by"), "x\xe2\x80\x8by");  // zero-width space is not whitespace
  EXPECT_EQ(answer_tokens(" The  red\xc2\xa0" "car "), (std::vector<std::string>{"red", "car"}));
}

TEST(SquadMetric, ExactMatchAndF1) {
  EXPECT_EQ(exact_match_score("The Cat!", "cat"), 1);
  EXPECT_EQ(exact_match_score("cats", "cat"), 0);
  EXPECT_DOUBLE_EQ(f1_score("red bus", "the red car"), 0.5);
  EXPECT_DOUBLE_EQ(f1_score("red red red", "red"), 0.5);  // multiset: one "red" overlaps
  EXPECT_DOUBLE_EQ(f1_score("red red", "red red car"), 0.8);
  EXPECT_EQ(f1_score("blue", "red"), 0);
  // v1.1 gives two empty answers F1 0 (nothing overlaps) but EM 1; v2.0 gives them 1.
  EXPECT_EQ(f1_score("", ""), 0);
  EXPECT_EQ(exact_match_score("", "the"), 1);
  EXPECT_EQ(f1_score_v2("", ""), 1);
  EXPECT_EQ(f1_score_v2("", "."), 1);
  EXPECT_EQ(f1_score_v2("Paris", ""), 0);
  EXPECT_EQ(f1_score_v2("", "Paris"), 0);
  EXPECT_DOUBLE_EQ(f1_score_v2("red bus", "the red car"), 0.5);
}

// ---------------------------------------------------------------------------------------------------
// v2.0, by hand

// Two answerable and two unanswerable questions; the scores below are worked out in the comments.
const char* kTinyV2 = R"({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris has a red car.",
    "qas": [{"id": "q1", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}], "is_impossible": false},
            {"id": "q2", "question": "?", "answers": [{"text": "the red car", "answer_start": 10}],
             "is_impossible": false},
            {"id": "q3", "question": "?", "answers": [], "is_impossible": true},
            {"id": "q4", "question": "?", "answers": [], "is_impossible": true}]}]}]})";

TEST(SquadV2, HandCheckedBreakdownAndThresholdSearch) {
  const Dataset dataset = parse_dataset(kTinyV2);
  // q1 right (1/1), q2 half right (EM 0, F1 0.5), q3 answers an unanswerable question (0/0), q4 abstains (1/1).
  const Predictions predictions{{"q1", "Paris"}, {"q2", "red bus"}, {"q3", "London"}, {"q4", ""}};
  const NoAnswerProbabilities na = parse_na_probs(R"({"q1": 0.1, "q2": 0.6, "q3": 0.8, "q4": 0.3})");
  const EvaluationResult r = evaluate(dataset, predictions, &na);
  EXPECT_EQ(r.metric, MetricVersion::v2_0);
  EXPECT_DOUBLE_EQ(r.overall.exact, 50);
  EXPECT_DOUBLE_EQ(r.overall.f1, 62.5);
  EXPECT_EQ(r.overall.total, 4u);
  ASSERT_TRUE(r.has_answer && r.no_answer && r.best);
  EXPECT_DOUBLE_EQ(r.has_answer->exact, 50);
  EXPECT_DOUBLE_EQ(r.has_answer->f1, 75);
  EXPECT_EQ(r.has_answer->total, 2u);
  EXPECT_DOUBLE_EQ(r.no_answer->exact, 50);
  EXPECT_DOUBLE_EQ(r.no_answer->f1, 50);
  EXPECT_EQ(r.no_answer->total, 2u);
  // Start with everything unanswered (q3, q4 right: 2), answer by increasing na_prob: q1 +1 -> 3 at 0.1,
  // q4 +0, q2 +0 (EM) or +0.5 (F1) -> 3.5 at 0.6, q3 -1. So EM 3/4 at 0.1 and F1 3.5/4 at 0.6.
  EXPECT_DOUBLE_EQ(r.best->best_exact, 75);
  EXPECT_DOUBLE_EQ(r.best->best_exact_thresh, 0.1);
  EXPECT_DOUBLE_EQ(r.best->best_f1, 87.5);
  EXPECT_DOUBLE_EQ(r.best->best_f1_thresh, 0.6);

  // A threshold of 0.5 makes q2 and q3 "unanswerable": q2 loses its half point, q3 becomes right.
  EvaluationOptions options;
  options.na_prob_threshold = 0.5;
  const EvaluationResult t = evaluate(dataset, predictions, &na, options);
  EXPECT_DOUBLE_EQ(t.overall.exact, 75);
  EXPECT_DOUBLE_EQ(t.overall.f1, 75);
  EXPECT_DOUBLE_EQ(t.no_answer->exact, 100);

  // Without probabilities there is no search, and the default threshold never fires.
  const EvaluationResult plain = evaluate(dataset, predictions);
  EXPECT_FALSE(plain.best);
  EXPECT_DOUBLE_EQ(plain.overall.f1, 62.5);
}

TEST(SquadV2, EqualProbabilitiesAreVisitedInFileOrder) {
  // q2 (+0.5) and q3 (-1) tie at 0.6: the official stable sort visits them in file order, so the
  // running F1 peaks at 3.5 only when q2 comes first.
  const Dataset dataset = parse_dataset(kTinyV2);
  const Predictions predictions{{"q1", "Paris"}, {"q2", "red bus"}, {"q3", "London"}, {"q4", ""}};
  const NoAnswerProbabilities q2_first = parse_na_probs(R"({"q1": 0.1, "q2": 0.6, "q3": 0.6, "q4": 0.3})");
  const NoAnswerProbabilities q3_first = parse_na_probs(R"({"q3": 0.6, "q1": 0.1, "q2": 0.6, "q4": 0.3})");
  EXPECT_DOUBLE_EQ(evaluate(dataset, predictions, &q2_first).best->best_f1, 87.5);
  EXPECT_DOUBLE_EQ(evaluate(dataset, predictions, &q3_first).best->best_f1, 75);
}

TEST(SquadV2, MissingPredictionScoresZeroAndCounts) {
  const Dataset dataset = parse_dataset(kTinyV2);
  const Predictions predictions{{"q1", "Paris"}, {"q4", ""}, {"elsewhere", "x"}};
  const EvaluationResult r = evaluate(dataset, predictions);
  EXPECT_EQ(r.missing_predictions, 2u);
  EXPECT_EQ(r.ignored_predictions, 1u);
  EXPECT_DOUBLE_EQ(r.overall.exact, 50);
  EXPECT_EQ(r.overall.total, 4u);
  EXPECT_DOUBLE_EQ(r.no_answer->exact, 50);  // q3, missing, is not counted right
}

// All predictions of the half dev set derived from its gold answers, then changed one at a time.
class SquadV2HalfDev : public ::testing::Test {
 protected:
  void SetUp() override {
    DEFORMER_REQUIRE_FILE(squad_v2_half());
    dataset_ = read_dataset(squad_v2_half());
    for (const auto& article : dataset_.articles)
      for (const auto& paragraph : article.paragraphs)
        for (const auto& question : paragraph.questions)
          perfect_[question.id] = question.answers.empty() ? "" : question.answers[0].text;
  }
  Dataset dataset_;
  Predictions perfect_;
};

TEST_F(SquadV2HalfDev, PerfectPredictionsAndTheBreakdownCounts) {
  const EvaluationResult r = evaluate(dataset_, perfect_);
  EXPECT_EQ(r.metric, MetricVersion::v2_0);
  EXPECT_EQ(r.overall.total, 6078u);
  ASSERT_TRUE(r.has_answer && r.no_answer);
  EXPECT_EQ(r.has_answer->total, 2910u);
  EXPECT_EQ(r.no_answer->total, 3168u);
  EXPECT_DOUBLE_EQ(r.overall.exact, 100);
  EXPECT_DOUBLE_EQ(r.overall.f1, 100);
  EXPECT_EQ(r.missing_predictions, 0u);
  const json out = json::parse(to_json(r));
  EXPECT_EQ(out.at("HasAns_total"), 2910);
  EXPECT_EQ(out.at("NoAns_total"), 3168);
  EXPECT_EQ(out.at("total"), 6078);
  EXPECT_FALSE(out.contains("best_exact"));
  const std::string text = to_text(r);
  EXPECT_NE(text.find("NoAns "), std::string::npos) << text;
}

TEST_F(SquadV2HalfDev, EmptyGoldScoresOneOnlyForAnEmptyPrediction) {
  // c42edddd0f45b968cc4c512e5 is unanswerable ("Who gave their name to Normandy in the 1000's and 1100's").
  Predictions p = perfect_;
  p["c42edddd0f45b968cc4c512e5"] = "Normans";
  const EvaluationResult r = evaluate(dataset_, p);
  EXPECT_DOUBLE_EQ(r.no_answer->exact, 100.0 * 3167 / 3168);
  EXPECT_DOUBLE_EQ(r.no_answer->f1, 100.0 * 3167 / 3168);
  EXPECT_DOUBLE_EQ(r.has_answer->f1, 100);
  EXPECT_DOUBLE_EQ(r.overall.exact, 100.0 * 6077 / 6078);

  // The same wrong answer with a no-answer probability above the threshold counts as an abstention.
  std::ostringstream na;
  na << "{";
  bool first = true;
  for (const auto& [id, text] : p) {
    na << (first ? "" : ",") << json(id).dump() << ":" << (id == "c42edddd0f45b968cc4c512e5" ? 0.9 : 0.0);
    first = false;
  }
  na << "}";
  const NoAnswerProbabilities probs = parse_na_probs(na.str());
  EvaluationOptions options;
  options.na_prob_threshold = 0.5;
  EXPECT_DOUBLE_EQ(evaluate(dataset_, p, &probs, options).overall.exact, 100);
  // The search finds that too: answering everything but that question is perfect, at threshold 0.0.
  const EvaluationResult searched = evaluate(dataset_, p, &probs);
  EXPECT_DOUBLE_EQ(searched.best->best_exact, 100);
  EXPECT_DOUBLE_EQ(searched.best->best_exact_thresh, 0.0);
}

TEST_F(SquadV2HalfDev, GoldAnswersThatNormaliseToNothingAreDropped) {
  // f8e9b213dc94ab16f422b607f has golds "interventionism" x4 and "." (empty once normalised): an empty
  // prediction would match "." if it counted, but the official script drops such golds.
  Predictions p = perfect_;
  p["f8e9b213dc94ab16f422b607f"] = "";
  const EvaluationResult r = evaluate(dataset_, p);
  EXPECT_DOUBLE_EQ(r.has_answer->exact, 100.0 * 2909 / 2910);
  EXPECT_DOUBLE_EQ(r.has_answer->f1, 100.0 * 2909 / 2910);
}

// What `deformer-qa score` runs, with every file it takes, and both of its output formats.
TEST(SquadScoreCommand, EvaluateFilesWithNoAnswerProbabilities) {
  TempDir dir;
  const std::string data = dir.write("tiny-v2.json", kTinyV2);
  const std::string preds = dir.write("preds.json", R"({"q1": "Paris", "q2": "red bus", "q3": "London", "q4": ""})");
  const std::string na = dir.write("na.json", R"({"q1": 0.1, "q2": 0.6, "q3": 0.8, "q4": 0.3})");
  const EvaluationResult r = evaluate_files(data, preds, na);
  const json out = json::parse(to_json(r));
  EXPECT_DOUBLE_EQ(out.at("exact").get<double>(), 50);
  EXPECT_DOUBLE_EQ(out.at("f1").get<double>(), 62.5);
  EXPECT_EQ(out.at("HasAns_total"), 2);
  EXPECT_EQ(out.at("NoAns_total"), 2);
  EXPECT_DOUBLE_EQ(out.at("best_exact").get<double>(), 75);
  EXPECT_DOUBLE_EQ(out.at("best_exact_thresh").get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(out.at("best_f1").get<double>(), 87.5);
  EXPECT_DOUBLE_EQ(out.at("best_f1_thresh").get<double>(), 0.6);
  const std::string text = to_text(r);
  EXPECT_NE(text.find("SQuAD v2.0 metric: EM 50.000  F1 62.500  (4 questions)"), std::string::npos) << text;
  EXPECT_NE(text.find("HasAns: EM 50.000  F1 75.000  (2 questions)"), std::string::npos) << text;
  EXPECT_NE(text.find("best EM 75.000 at na_prob threshold 0.1"), std::string::npos) << text;
  EXPECT_NE(text.find("best F1 87.500 at na_prob threshold 0.6"), std::string::npos) << text;

  // --metric v1.1 on this file fails (unanswerable questions); --na-prob-thresh reaches the metric.
  EvaluationOptions options;
  options.metric = MetricVersion::v1_1;
  EXPECT_THROW(evaluate_files(data, preds, "", options), std::invalid_argument);
  options = {};
  options.na_prob_threshold = 0.5;
  EXPECT_DOUBLE_EQ(evaluate_files(data, preds, na, options).overall.exact, 75);
  EXPECT_THROW(evaluate_files(data, preds, dir.write("na-missing.json", "{}")), std::invalid_argument);
}

TEST(SquadScoreCommand, V11JsonHasTheOfficialKeys) {
  const Dataset d = parse_dataset(R"({"version": "1.1", "data": [{"paragraphs": [{"context": "c",
      "qas": [{"id": "q1", "question": "?", "answers": [{"text": "the Cat", "answer_start": 0}]},
              {"id": "q2", "question": "?", "answers": [{"text": "dog", "answer_start": 0}]}]}]}]})");
  const EvaluationResult r = evaluate(d, Predictions{{"q1", "cat."}, {"zz", "?"}});
  const json out = json::parse(to_json(r));
  EXPECT_DOUBLE_EQ(out.at("exact_match").get<double>(), 50);
  EXPECT_DOUBLE_EQ(out.at("f1").get<double>(), 50);
  EXPECT_EQ(out.at("total"), 2);
  EXPECT_EQ(out.at("missing_predictions"), 1);
  EXPECT_EQ(out.at("ignored_predictions"), 1);
  EXPECT_FALSE(out.contains("exact") || out.contains("HasAns_total") || out.contains("best_f1"));
}

// ---------------------------------------------------------------------------------------------------
// Independent check: tests/golden/squad_eval_reference.py, which lets Python do the Unicode work.

std::string python() {
  if (const char* env = std::getenv("DEFORMER_PYTHON3"); env && *env) return env;
  const std::string configured = DEFORMER_PYTHON;
  return configured.empty() ? "python3" : configured;
}

std::string reference_script() { return std::string(DEFORMER_SOURCE_DIR) + "/tests/golden/squad_eval_reference.py"; }

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs the reference script and returns its standard output; fails the test when it fails.
std::string run_reference(const std::string& arguments) {
  const std::string command = quote(python()) + " " + quote(reference_script()) + " " + arguments;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buffer[65536];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe.get())) > 0) out.append(buffer, n);
  const int status = ::pclose(pipe.release());
  if (status != 0) throw std::runtime_error("reference script failed (" + std::to_string(status) + "): " + command);
  return out;
}

#define REQUIRE_PYTHON()                                                                            \
  do {                                                                                              \
    if (std::system((quote(python()) + " -c 'import re, json' >/dev/null 2>&1").c_str()) != 0) {   \
      if (::deformer::testing::running_in_ci()) FAIL() << "no Python 3 under CI: " << python();    \
      GTEST_SKIP() << "no Python 3 (" << python() << "); set DEFORMER_PYTHON3";                      \
    }                                                                                               \
  } while (0)

// Every key of the reference output must match the C++ JSON, to rounding.
void expect_same_scores(const std::string& reference, const EvaluationResult& result) {
  const json expected = json::parse(reference);
  const json actual = json::parse(to_json(result));
  EXPECT_EQ(expected.size(), actual.size()) << "reference: " << expected.dump() << "\nC++: " << actual.dump();
  for (const auto& [key, value] : expected.items()) {
    ASSERT_TRUE(actual.contains(key)) << key;
    EXPECT_NEAR(actual[key].get<double>(), value.get<double>(), 1e-9) << key;
  }
}

TEST(ReferenceScript, AgreesOnTheLeaderboardFiles) {
  REQUIRE_PYTHON();
  DEFORMER_REQUIRE_FILE(testing::squad_dev_v11());
  for (const char* file : {"bert-ensemble.json", "match-lstm.json", "logistic-regression.json"}) {
    SCOPED_TRACE(file);
    const std::string predictions = predictions_dir() + "/" + file;
    DEFORMER_REQUIRE_FILE(predictions);
    expect_same_scores(run_reference("score " + quote(testing::squad_dev_v11()) + " " + quote(predictions)),
                       evaluate_files(testing::squad_dev_v11(), predictions));
  }
}

TEST(ReferenceScript, AgreesOnV2HalfDevWithSyntheticPredictions) {
  REQUIRE_PYTHON();
  DEFORMER_REQUIRE_FILE(squad_v2_half());
  const Dataset dataset = read_dataset(squad_v2_half());
  // Right answers, abstentions, decorated answers, partial overlaps, wrong answers and a few missing
  // ones; probabilities on a coarse grid so that ties occur.
  std::mt19937 rng(1234);
  json predictions = json::object(), na = json::object();
  std::size_t i = 0;
  for (const auto& article : dataset.articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) {
        const std::string gold = question.answers.empty() ? "" : question.answers[rng() % question.answers.size()].text;
        const std::string context_words = paragraph.context.substr(0, paragraph.context.find(' ', 20));
        switch (i++ % 7) {
          case 0: predictions[question.id] = gold; break;
          case 1: predictions[question.id] = ""; break;
          case 2: predictions[question.id] = "The " + gold + "!"; break;
          case 3: predictions[question.id] = context_words; break;
          case 4: predictions[question.id] = gold.substr(0, gold.size() / 2) + " " + question.question; break;
          case 5: predictions[question.id] = question.question; break;
          case 6: if (rng() % 4 == 0) continue; predictions[question.id] = gold; break;
        }
        na[question.id] = double(rng() % 20) / 20;
      }
  predictions["not-a-dev-id"] = "x";
  TempDir dir;
  const std::string preds_file = dir.write("preds.json", predictions.dump());
  const std::string na_file = dir.write("na.json", na.dump());
  const Predictions p = read_predictions(preds_file);
  const NoAnswerProbabilities probs = read_na_probs(na_file);
  const std::string data = quote(squad_v2_half());

  const EvaluationResult plain = evaluate(dataset, p);
  EXPECT_GT(plain.missing_predictions, 0u);
  expect_same_scores(run_reference("score " + data + " " + quote(preds_file)), plain);
  expect_same_scores(run_reference("score " + data + " " + quote(preds_file) + " --na-prob " + quote(na_file)),
                     evaluate(dataset, p, &probs));
  EvaluationOptions options;
  options.na_prob_threshold = 0.5;
  expect_same_scores(run_reference("score " + data + " " + quote(preds_file) + " --na-prob " + quote(na_file) +
                                   " --na-prob-thresh 0.5"),
                     evaluate(dataset, p, &probs, options));
}

void expect_same_normalisation(const std::vector<std::string>& strings) {
  TempDir dir;
  const std::string file = dir.write("strings.json", json(strings).dump());
  const json expected = json::parse(run_reference("normalize " + quote(file)));
  ASSERT_EQ(expected.size(), strings.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < strings.size(); ++i) {
    const std::string actual = normalize_answer(strings[i]);
    const std::string want = expected[i].get<std::string>();
    if (actual == want || ++mismatches > 5) continue;
    // The strings are long: show where they part, on a code point boundary.
    std::size_t k = std::mismatch(actual.begin(), actual.end(), want.begin(), want.end()).first - actual.begin();
    std::size_t from = k > 60 ? k - 60 : 0;
    while (from > 0 && (static_cast<unsigned char>(actual[from]) & 0xC0) == 0x80) --from;
    const auto around = [&](const std::string& s) {
      return json(s.substr(from, 120)).dump(-1, ' ', false, json::error_handler_t::replace);
    };
    ADD_FAILURE() << "normalize_answer of string " << i << " (starting "
                  << json(strings[i].substr(0, 120)).dump(-1, ' ', false, json::error_handler_t::replace)
                  << ") differs from Python at byte " << k << ":\n  C++:    " << around(actual)
                  << "\n  Python: " << around(want);
  }
  EXPECT_EQ(mismatches, 0u);
}

// The Unicode version of python()'s unicodedata, e.g. "14.0.0".
std::string python_unicode_version() {
  std::string out;
  if (FILE* p = ::popen((python() + " -c 'import unicodedata; print(unicodedata.unidata_version)'").c_str(), "r")) {
    char buffer[64];
    while (std::fgets(buffer, sizeof buffer, p)) out += buffer;
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(ReferenceScript, NormalisesEveryCodePointLikePython) {
  REQUIRE_PYTHON();
  // Characters assigned in a later Unicode version (a newer Python) legitimately normalise differently.
  if (const std::string version = python_unicode_version(); version != unicode::kUnicodeVersion)
    GTEST_SKIP() << "skipped: " << python() << " has Unicode " << version << ", the tables Unicode "
                 << unicode::kUnicodeVersion;
  SCOPED_TRACE(std::string("the tables come from Python ") + unicode::kPythonVersion + " (Unicode " +
               unicode::kUnicodeVersion + "); if " + python() +
               " has another Unicode version, regenerate them with scripts/unicode/gen_squad_unicode_tables.py");
  // Each code point in the contexts that matter: next to letters and articles (\b), before and after a
  // capital sigma (final sigma), alone (lower-case), and between words (whitespace).
  std::vector<std::string> strings;
  std::string s;
  const auto utf8 = [](char32_t c) {
    std::string out;
    if (c < 0x80) {
      out += char(c);
    } else if (c < 0x800) {
      out += char(0xC0 | (c >> 6)), out += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += char(0xE0 | (c >> 12)), out += char(0x80 | ((c >> 6) & 0x3F)), out += char(0x80 | (c & 0x3F));
    } else {
      out += char(0xF0 | (c >> 18)), out += char(0x80 | ((c >> 12) & 0x3F));
      out += char(0x80 | ((c >> 6) & 0x3F)), out += char(0x80 | (c & 0x3F));
    }
    return out;
  };
  const std::string sigma = "\xce\xa3", alpha = "\xce\x91";  // Σ, Α
  for (char32_t c = 1; c < 0x110000; ++c) {
    if (c >= 0xD800 && c < 0xE000) continue;
    const std::string x = utf8(c);
    s += "a" + x + "an " + x + "the" + x + " " + sigma + x + sigma + " " + alpha + x + sigma + x + alpha;
    s += " X" + x + "Y ";
    if (c % 64 == 0) {
      strings.push_back(std::move(s));
      s.clear();
    }
  }
  strings.push_back(s);
  expect_same_normalisation(strings);
}

TEST(ReferenceScript, NormalisesTheDevSetTextLikePython) {
  REQUIRE_PYTHON();
  DEFORMER_REQUIRE_FILE(testing::squad_dev_v11());
  DEFORMER_REQUIRE_FILE(squad_v2_half());
  std::vector<std::string> strings;
  for (const std::string& path : {testing::squad_dev_v11(), squad_v2_half()})
    for (const auto& article : read_dataset(path).articles)
      for (const auto& paragraph : article.paragraphs) {
        strings.push_back(paragraph.context);
        for (const auto& question : paragraph.questions) {
          strings.push_back(question.question);
          for (const auto& answer : question.answers) strings.push_back(answer.text);
        }
      }
  expect_same_normalisation(strings);
}

}  // namespace
}  // namespace deformer::squad
