#include "deformer/squad.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "text/squad_unicode_tables.h"
#include "text/utf8.h"

namespace deformer::squad {
namespace {

using json = nlohmann::json;

// Text that is not valid UTF-8 is refused as Python's decoder refuses it.
// One pass: the offset named is where the invalid sequence starts.
std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const size_t start = pos;
    char32_t cp = 0;
    if (utf8::try_decode(s, pos, cp))
      throw std::invalid_argument("text is not valid UTF-8 at byte offset " + std::to_string(start));
    out.push_back(cp);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Python's Unicode behaviour, from the generated tables

template <std::size_t N>
bool in_ranges(const unicode::Range (&ranges)[N], char32_t c) {
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                                    [](char32_t v, const unicode::Range& r) { return v < r.first; });
  return it != std::begin(ranges) && c <= (it - 1)->last;
}

bool is_word(char32_t c) { return in_ranges(unicode::kWord, c); }
bool is_space(char32_t c) { return in_ranges(unicode::kWhitespace, c); }
bool is_case_ignorable(char32_t c) { return in_ranges(unicode::kCaseIgnorable, c); }
bool is_cased(char32_t c) { return in_ranges(unicode::kCased, c); }

char32_t lower_single(char32_t c) {
  const auto& runs = unicode::kLowerRuns;
  const auto* it = std::upper_bound(std::begin(runs), std::end(runs), c,
                                    [](char32_t v, const unicode::LowerRun& r) { return v < r.first; });
  if (it == std::begin(runs)) return c;
  const auto& run = *(it - 1);
  if (c > run.last || (c - run.first) % run.stride != 0) return c;
  return char32_t(int64_t(c) + run.delta);
}

// CPython's handle_capital_sigma: U+03A3 lowers to final sigma after a cased letter (skipping
// case-ignorables) that is not followed by one.
bool is_final_sigma(const std::u32string& s, std::size_t i) {
  std::size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  std::size_t k = i + 1;
  while (k < s.size() && is_case_ignorable(s[k])) ++k;
  return k == s.size() || !is_cased(s[k]);
}

std::u32string python_lower(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
      continue;
    }
    if (c == 0x03A3) {
      out.push_back(is_final_sigma(s, i) ? 0x03C2 : 0x03C3);
      continue;
    }
    bool multi = false;
    for (const auto& m : unicode::kLowerMulti) {
      if (m.code_point == c) {
        for (char32_t l : m.lower)
          if (l) out.push_back(l);
        multi = true;
        break;
      }
    }
    if (!multi) out.push_back(lower_single(c));
  }
  return out;
}

bool is_punctuation(char32_t c) {
  static constexpr std::string_view kPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // string.punctuation
  return c < 0x80 && kPunctuation.find(char(c)) != std::string_view::npos;
}

// The tokens of normalize_answer, before they are joined with single spaces.
std::vector<std::u32string> normalized_tokens(std::string_view text) {
  std::u32string s = python_lower(decode_utf8(text));
  s.erase(std::remove_if(s.begin(), s.end(), is_punctuation), s.end());

  // re.sub(r'\b(a|an|the)\b', ' ', s): alternatives tried in order at each position, \b judged on the
  // unmodified string, scanning resumes after a match.
  std::u32string t;
  t.reserve(s.size());
  const auto word_at = [&](std::size_t i) { return i < s.size() && is_word(s[i]); };
  for (std::size_t i = 0; i < s.size();) {
    std::size_t match = 0;
    if ((i == 0 || !is_word(s[i - 1])) && is_word(s[i])) {
      for (std::u32string_view article : {U"a", U"an", U"the"}) {
        if (s.compare(i, article.size(), article.data(), article.size()) == 0 && !word_at(i + article.size())) {
          match = article.size();
          break;
        }
      }
    }
    if (match) {
      t.push_back(U' ');
      i += match;
    } else {
      t.push_back(s[i++]);
    }
  }

  std::vector<std::u32string> tokens;
  for (std::size_t i = 0; i < t.size();) {
    while (i < t.size() && is_space(t[i])) ++i;
    const std::size_t begin = i;
    while (i < t.size() && !is_space(t[i])) ++i;
    if (i > begin) tokens.emplace_back(t, begin, i - begin);
  }
  return tokens;
}

// A normalised answer, computed once per string and compared many times.
struct Normalized {
  std::string text;                 // normalize_answer
  std::vector<std::string> tokens;  // its split(), sorted for the multiset overlap
};

Normalized normalize(std::string_view text) {
  Normalized n;
  for (const auto& token : normalized_tokens(text)) {
    std::string utf8;
    for (char32_t c : token) utf8::append(utf8, c);
    if (!n.text.empty()) n.text.push_back(' ');
    n.text += utf8;
    n.tokens.push_back(std::move(utf8));
  }
  std::sort(n.tokens.begin(), n.tokens.end());
  return n;
}

std::size_t overlap(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t same = 0;
  for (std::size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    if (a[i] < b[j]) {
      ++i;
    } else if (b[j] < a[i]) {
      ++j;
    } else {
      ++same, ++i, ++j;
    }
  }
  return same;
}

// Same operations in the same order as the official scripts, so that sums agree to the last bit.
double token_f1(const Normalized& prediction, const Normalized& gold) {
  const std::size_t same = overlap(prediction.tokens, gold.tokens);
  if (same == 0) return 0;
  const double precision = 1.0 * double(same) / double(prediction.tokens.size());
  const double recall = 1.0 * double(same) / double(gold.tokens.size());
  return (2 * precision * recall) / (precision + recall);
}

double token_f1_v2(const Normalized& prediction, const Normalized& gold) {
  if (prediction.tokens.empty() || gold.tokens.empty()) return prediction.tokens.empty() && gold.tokens.empty() ? 1 : 0;
  return token_f1(prediction, gold);
}

// ---------------------------------------------------------------------------------------------------
// Files and JSON

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw std::runtime_error("cannot read '" + path + "': is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read '" + path + "'");
  std::string text = std::move(content).str();
  // SQuAD ships zipped (dev-v1.1.json.zip), and "not valid UTF-8 at byte offset 11" says nothing about why.
  struct Archive {
    std::string_view magic, kind, command;
  };
  for (const Archive& a : {Archive{"PK\x03\x04", "a zip archive", "unzip"}, Archive{"\x1f\x8b", "gzip-compressed", "gunzip"},
                           Archive{"\xfd" "7zXZ", "xz-compressed", "unxz"}, Archive{"BZh", "bzip2-compressed", "bunzip2"}})
    if (std::string_view(text).substr(0, a.magic.size()) == a.magic)
      throw std::runtime_error("'" + path + "' is " + std::string(a.kind) + ", not JSON: unpack it first (" +
                               std::string(a.command) + ")");
  return text;
}

template <typename Json>
Json parse_json(std::string_view text, const std::string& source) {
  // Checked before parsing so that the message gives the byte offset of the bad text, wherever it is.
  if (const auto bad = utf8::first_invalid(text); bad != std::string_view::npos)
    throw std::runtime_error(source + ": not valid UTF-8 at byte offset " + std::to_string(bad));
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number past double's range (found by tests/fuzz/squad_fuzz.cpp: it
    // escaped as nlohmann's own type). The parser's message quotes what it last read, which can be most of a huge
    // file: 200 bytes say enough.
    std::string what = e.what();
    if (what.size() > 200) what = what.substr(0, 200) + "...";
    throw std::runtime_error(source + ": malformed JSON: " + what);
  }
}

// Where in the file a value sits, for error messages ("data[3].paragraphs[0].qas[5]").
[[noreturn]] void layout_error(const std::string& source, const std::string& where, const std::string& problem) {
  throw std::runtime_error(source + ": " + where + ": " + problem);
}

const json& require(const json& object, const char* key, json::value_t type, const std::string& source,
                    const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) layout_error(source, where, std::string("missing \"") + key + "\"");
  const bool ok = type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
  if (!ok)
    layout_error(source, where,
                 std::string("\"") + key + "\" is a " + it->type_name() + ", expected a " + json(type).type_name());
  return *it;
}

const char* metric_name(MetricVersion metric) { return metric == MetricVersion::v2_0 ? "v2.0" : "v1.1"; }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Data

std::size_t Dataset::num_questions() const {
  std::size_t n = 0;
  for (const auto& article : articles)
    for (const auto& paragraph : article.paragraphs) n += paragraph.questions.size();
  return n;
}

bool Dataset::is_v2() const {
  if (version.rfind("v2", 0) == 0 || version.rfind("2", 0) == 0) return true;
  for (const auto& article : articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions)
        if (question.is_impossible) return true;
  return false;
}

Dataset parse_dataset(std::string_view text, const std::string& source) {
  const json root = parse_json<json>(text, source);
  if (!root.is_object())
    layout_error(source, "top level", std::string("is a ") + root.type_name() + ", expected an object");
  Dataset dataset;
  if (const auto it = root.find("version"); it != root.end() && it->is_string())
    dataset.version = it->get<std::string>();
  const json& data = require(root, "data", json::value_t::array, source, "top level");
  for (std::size_t a = 0; a < data.size(); ++a) {
    const std::string where_a = "data[" + std::to_string(a) + "]";
    if (!data[a].is_object()) layout_error(source, where_a, "expected an object");
    Article article;
    if (const auto it = data[a].find("title"); it != data[a].end() && it->is_string())
      article.title = it->get<std::string>();
    const json& paragraphs = require(data[a], "paragraphs", json::value_t::array, source, where_a);
    for (std::size_t p = 0; p < paragraphs.size(); ++p) {
      const std::string where_p = where_a + ".paragraphs[" + std::to_string(p) + "]";
      if (!paragraphs[p].is_object()) layout_error(source, where_p, "expected an object");
      Paragraph paragraph;
      paragraph.context = require(paragraphs[p], "context", json::value_t::string, source, where_p).get<std::string>();
      const json& qas = require(paragraphs[p], "qas", json::value_t::array, source, where_p);
      for (std::size_t q = 0; q < qas.size(); ++q) {
        const std::string where_q = where_p + ".qas[" + std::to_string(q) + "]";
        if (!qas[q].is_object()) layout_error(source, where_q, "expected an object");
        Question question;
        question.id = require(qas[q], "id", json::value_t::string, source, where_q).get<std::string>();
        question.question = require(qas[q], "question", json::value_t::string, source, where_q).get<std::string>();
        if (const auto it = qas[q].find("is_impossible"); it != qas[q].end()) {
          if (!it->is_boolean()) layout_error(source, where_q, "\"is_impossible\" is not a boolean");
          question.is_impossible = it->get<bool>();
        }
        const json& answers = require(qas[q], "answers", json::value_t::array, source, where_q);
        for (std::size_t k = 0; k < answers.size(); ++k) {
          const std::string where_k = where_q + ".answers[" + std::to_string(k) + "]";
          if (!answers[k].is_object()) layout_error(source, where_k, "expected an object");
          Answer answer;
          answer.text = require(answers[k], "text", json::value_t::string, source, where_k).get<std::string>();
          if (answers[k].contains("answer_start"))
            answer.answer_start =
                require(answers[k], "answer_start", json::value_t::number_integer, source, where_k).get<int64_t>();
          question.answers.push_back(std::move(answer));
        }
        paragraph.questions.push_back(std::move(question));
      }
      article.paragraphs.push_back(std::move(paragraph));
    }
    dataset.articles.push_back(std::move(article));
  }
  return dataset;
}

Dataset read_dataset(const std::string& path) { return parse_dataset(read_file(path), path); }

Predictions parse_predictions(std::string_view text, const std::string& source) {
  const json root = parse_json<json>(text, source);
  if (!root.is_object())
    layout_error(source, "top level", std::string("is a ") + root.type_name() + ", expected an object of id -> answer");
  Predictions predictions;
  predictions.reserve(root.size());
  for (const auto& [id, answer] : root.items()) {
    if (!answer.is_string())
      layout_error(source, "\"" + id + "\"", std::string("answer is a ") + answer.type_name() + ", expected a string");
    predictions.emplace(id, answer.get<std::string>());
  }
  return predictions;
}

Predictions read_predictions(const std::string& path) { return parse_predictions(read_file(path), path); }

const double* NoAnswerProbabilities::find(const std::string& id) const {
  const auto it = index.find(id);
  return it == index.end() ? nullptr : &entries[it->second].second;
}

NoAnswerProbabilities parse_na_probs(std::string_view text, const std::string& source) {
  // ordered_json keeps the file order, which the threshold search depends on for equal probabilities.
  const auto root = parse_json<nlohmann::ordered_json>(text, source);
  if (!root.is_object())
    layout_error(source, "top level",
                 std::string("is a ") + root.type_name() + ", expected an object of id -> probability");
  NoAnswerProbabilities probs;
  for (const auto& [id, value] : root.items()) {
    if (!value.is_number())
      layout_error(source, "\"" + id + "\"", std::string("is a ") + value.type_name() + ", expected a number");
    probs.index.emplace(id, probs.entries.size());
    probs.entries.emplace_back(id, value.get<double>());
  }
  return probs;
}

NoAnswerProbabilities read_na_probs(const std::string& path) { return parse_na_probs(read_file(path), path); }

// ---------------------------------------------------------------------------------------------------
// Metric building blocks

std::string normalize_answer(std::string_view text) { return normalize(text).text; }

std::vector<std::string> answer_tokens(std::string_view text) {
  std::vector<std::string> tokens;
  for (const auto& token : normalized_tokens(text)) {
    std::string utf8;
    for (char32_t c : token) utf8::append(utf8, c);
    tokens.push_back(std::move(utf8));
  }
  return tokens;
}

double exact_match_score(std::string_view prediction, std::string_view gold) {
  return normalize(prediction).text == normalize(gold).text ? 1 : 0;
}

double f1_score(std::string_view prediction, std::string_view gold) {
  return token_f1(normalize(prediction), normalize(gold));
}

double f1_score_v2(std::string_view prediction, std::string_view gold) {
  return token_f1_v2(normalize(prediction), normalize(gold));
}

// ---------------------------------------------------------------------------------------------------
// Evaluation

namespace {

std::size_t count_ignored(const Dataset& dataset, const Predictions& predictions) {
  std::unordered_set<std::string> ids;
  for (const auto& article : dataset.articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) ids.insert(question.id);
  std::size_t ignored = 0;
  for (const auto& entry : predictions) ignored += ids.count(entry.first) == 0;
  return ignored;
}

// evaluate-v1.1.py: every question occurrence counts; a missing prediction adds 0.
EvaluationResult evaluate_v11(const Dataset& dataset, const Predictions& predictions) {
  EvaluationResult result;
  result.metric = MetricVersion::v1_1;
  double exact = 0, f1 = 0;
  std::size_t total = 0;
  for (const auto& article : dataset.articles) {
    for (const auto& paragraph : article.paragraphs) {
      for (const auto& question : paragraph.questions) {
        ++total;
        const auto it = predictions.find(question.id);
        if (it == predictions.end()) {
          ++result.missing_predictions;
          continue;
        }
        if (question.answers.empty())
          throw std::invalid_argument("question " + question.id +
                                      " has no gold answer: the v1.1 metric cannot score it (use v2.0)");
        const Normalized prediction = normalize(it->second);
        double best_exact = 0, best_f1 = 0;
        for (const auto& answer : question.answers) {
          const Normalized gold = normalize(answer.text);
          best_exact = std::max(best_exact, prediction.text == gold.text ? 1.0 : 0.0);
          best_f1 = std::max(best_f1, token_f1(prediction, gold));
        }
        exact += best_exact;
        f1 += best_f1;
      }
    }
  }
  result.overall = {total ? 100.0 * exact / double(total) : 0, total ? 100.0 * f1 / double(total) : 0, total};
  return result;
}

struct V2Question {
  const Question* question = nullptr;
  bool has_answer = false;
  const std::string* prediction = nullptr;  // null: missing
  double exact_raw = 0;
  double f1_raw = 0;
};

Score mean(const std::vector<V2Question>& questions, const std::vector<double>& exact, const std::vector<double>& f1,
           const std::optional<bool>& has_answer) {
  Score score;
  double e = 0, f = 0;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    if (has_answer && questions[i].has_answer != *has_answer) continue;
    e += exact[i];
    f += f1[i];
    ++score.total;
  }
  if (score.total) {
    score.exact = 100.0 * e / double(score.total);
    score.f1 = 100.0 * f / double(score.total);
  }
  return score;
}

// find_best_thresh of evaluate-v2.0.py: start from "every question unanswered", then answer questions
// in increasing na_prob order and keep the best running score.
std::pair<double, double> best_threshold(const std::vector<V2Question>& questions,
                                         const std::unordered_map<std::string, std::size_t>& position,
                                         const NoAnswerProbabilities& na_probs, bool use_f1) {
  double current = 0;
  for (const auto& q : questions) current += (!q.has_answer && q.prediction) ? 1 : 0;
  double best = current, best_thresh = 0.0;
  std::vector<std::size_t> order(na_probs.entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return na_probs.entries[a].second < na_probs.entries[b].second;
  });
  for (const std::size_t i : order) {
    const auto it = position.find(na_probs.entries[i].first);
    if (it == position.end()) continue;
    const V2Question& q = questions[it->second];
    if (!q.prediction) continue;
    double diff;
    if (q.has_answer)
      diff = use_f1 ? q.f1_raw : q.exact_raw;
    else
      diff = q.prediction->empty() ? 0 : -1;
    current += diff;
    if (current > best) {
      best = current;
      best_thresh = na_probs.entries[i].second;
    }
  }
  return {questions.empty() ? 0 : 100.0 * best / double(questions.size()), best_thresh};
}

EvaluationResult evaluate_v20(const Dataset& dataset, const Predictions& predictions,
                              const NoAnswerProbabilities* na_probs, const EvaluationOptions& options) {
  EvaluationResult result;
  result.metric = MetricVersion::v2_0;

  // The official script keys everything by id: a repeated id keeps its first place and its last data.
  std::vector<V2Question> questions;
  std::unordered_map<std::string, std::size_t> position;
  for (const auto& article : dataset.articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) {
        const auto [it, inserted] = position.emplace(question.id, questions.size());
        if (inserted) questions.emplace_back();
        questions[it->second].question = &question;
      }

  std::vector<double> exact(questions.size()), f1(questions.size());
  for (std::size_t i = 0; i < questions.size(); ++i) {
    V2Question& q = questions[i];
    q.has_answer = !q.question->answers.empty();
    const auto it = predictions.find(q.question->id);
    if (it == predictions.end()) {
      ++result.missing_predictions;
      continue;
    }
    q.prediction = &it->second;
    // Gold answers that normalise to nothing do not count; none left means "no answer".
    std::vector<Normalized> golds;
    for (const auto& answer : q.question->answers) {
      Normalized gold = normalize(answer.text);
      if (!gold.text.empty()) golds.push_back(std::move(gold));
    }
    if (golds.empty()) golds.emplace_back();
    const Normalized prediction = normalize(*q.prediction);
    for (const auto& gold : golds) {
      q.exact_raw = std::max(q.exact_raw, prediction.text == gold.text ? 1.0 : 0.0);
      q.f1_raw = std::max(q.f1_raw, token_f1_v2(prediction, gold));
    }
    // Without probabilities the official script uses 0.0 for every prediction.
    double na_prob = 0.0;
    if (na_probs) {
      const double* p = na_probs->find(q.question->id);
      if (!p) throw std::invalid_argument("no-answer probabilities lack question " + q.question->id);
      na_prob = *p;
    }
    const bool predicted_unanswerable = na_prob > options.na_prob_threshold;
    exact[i] = predicted_unanswerable ? double(!q.has_answer) : q.exact_raw;
    f1[i] = predicted_unanswerable ? double(!q.has_answer) : q.f1_raw;
  }

  result.overall = mean(questions, exact, f1, std::nullopt);
  const Score has = mean(questions, exact, f1, true);
  const Score no = mean(questions, exact, f1, false);
  if (has.total) result.has_answer = has;
  if (no.total) result.no_answer = no;
  if (na_probs) {
    BestThreshold best;
    std::tie(best.best_exact, best.best_exact_thresh) = best_threshold(questions, position, *na_probs, false);
    std::tie(best.best_f1, best.best_f1_thresh) = best_threshold(questions, position, *na_probs, true);
    result.best = best;
  }
  return result;
}

}  // namespace

EvaluationResult evaluate(const Dataset& dataset, const Predictions& predictions, const NoAnswerProbabilities* na_probs,
                          const EvaluationOptions& options) {
  MetricVersion metric = options.metric;
  if (metric == MetricVersion::automatic) metric = dataset.is_v2() ? MetricVersion::v2_0 : MetricVersion::v1_1;
  if (metric == MetricVersion::v1_1 && na_probs)
    throw std::invalid_argument("no-answer probabilities only apply to the v2.0 metric");
  EvaluationResult result = metric == MetricVersion::v2_0 ? evaluate_v20(dataset, predictions, na_probs, options)
                                                          : evaluate_v11(dataset, predictions);
  result.ignored_predictions = count_ignored(dataset, predictions);
  return result;
}

EvaluationResult evaluate_files(const std::string& dataset_path, const std::string& predictions_path,
                                const std::string& na_prob_path, const EvaluationOptions& options) {
  const Dataset dataset = read_dataset(dataset_path);
  const Predictions predictions = read_predictions(predictions_path);
  if (na_prob_path.empty()) return evaluate(dataset, predictions, nullptr, options);
  const NoAnswerProbabilities na_probs = read_na_probs(na_prob_path);
  return evaluate(dataset, predictions, &na_probs, options);
}

std::string to_json(const EvaluationResult& result, int indent) {
  nlohmann::ordered_json out;
  if (result.metric == MetricVersion::v1_1) {
    out["exact_match"] = result.overall.exact;
    out["f1"] = result.overall.f1;
    out["total"] = result.overall.total;
  } else {
    out["exact"] = result.overall.exact;
    out["f1"] = result.overall.f1;
    out["total"] = result.overall.total;
    const auto breakdown = [&](const char* prefix, const std::optional<Score>& score) {
      if (!score) return;
      out[std::string(prefix) + "_exact"] = score->exact;
      out[std::string(prefix) + "_f1"] = score->f1;
      out[std::string(prefix) + "_total"] = score->total;
    };
    breakdown("HasAns", result.has_answer);
    breakdown("NoAns", result.no_answer);
    if (result.best) {
      out["best_exact"] = result.best->best_exact;
      out["best_exact_thresh"] = result.best->best_exact_thresh;
      out["best_f1"] = result.best->best_f1;
      out["best_f1_thresh"] = result.best->best_f1_thresh;
    }
  }
  out["missing_predictions"] = result.missing_predictions;
  out["ignored_predictions"] = result.ignored_predictions;
  return out.dump(indent);
}

std::string to_text(const EvaluationResult& result) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3);
  out << "SQuAD " << metric_name(result.metric) << " metric: EM " << result.overall.exact << "  F1 "
      << result.overall.f1 << "  (" << result.overall.total << " questions)\n";
  const auto line = [&](const char* name, const std::optional<Score>& score) {
    if (score)
      out << "  " << name << ": EM " << score->exact << "  F1 " << score->f1 << "  (" << score->total
          << " questions)\n";
  };
  line("HasAns", result.has_answer);
  line("NoAns ", result.no_answer);
  if (result.best) {
    out << "  best EM " << result.best->best_exact << " at na_prob threshold " << std::setprecision(6)
        << result.best->best_exact_thresh << std::setprecision(3) << "; best F1 " << result.best->best_f1
        << " at na_prob threshold " << std::setprecision(6) << result.best->best_f1_thresh << "\n";
  }
  if (result.missing_predictions)
    out << "  " << result.missing_predictions << " questions have no prediction (each scores 0)\n";
  if (result.ignored_predictions)
    out << "  " << result.ignored_predictions << " predictions are for ids not in the dataset (ignored)\n";
  return out.str();
}

std::string paragraph_id(const Article& article, std::size_t article_index, std::size_t paragraph_index) {
  return (article.title.empty() ? "article-" + std::to_string(article_index) : article.title) + "#" +
         std::to_string(paragraph_index);
}

}  // namespace deformer::squad
