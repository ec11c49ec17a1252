// The reader end to end on the fixture model: well-formed answers in both modes, batching independence,
// and the errors a user meets.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/reader.h"
#include "test_data.h"

namespace deformer {
namespace {

std::string sample(const std::string& name) {
  std::ifstream in(std::string(DEFORMER_SOURCE_DIR) + "/samples/documents/" + name);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class ReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto path = testing::fixture("tiny-own-vocab.pt");
    DEFORMER_REQUIRE_FILE(path);
    model_ = Model::load(path);
    docs_ = {{"lighthouse", sample("lighthouse.txt")}, {"bread", sample("bread.txt")}};
    // A long document of several windows in both modes.
    std::string long_text;
    for (const char* name : {"lighthouse.txt", "bread.txt", "river.txt", "chess.txt"}) long_text += sample(name) + "\n";
    docs_.push_back({"all", long_text + long_text});
  }
  std::shared_ptr<const Model> model_;
  std::vector<Document> docs_;
};

void expect_well_formed(const std::vector<Answer>& answers, const std::vector<Document>& docs) {
  for (const auto& a : answers) {
    const Document* doc = nullptr;
    for (const auto& d : docs)
      if (d.id == a.doc) doc = &d;
    ASSERT_NE(doc, nullptr) << "unknown doc " << a.doc;
    EXPECT_LT(a.start, a.end);
    EXPECT_EQ(a.answer, substring_by_code_points(doc->text, a.start, a.end));
    EXPECT_EQ(a.answer.front() == ' ', false) << "answers never start with whitespace";
    EXPECT_GT(a.score, 0.0);
    EXPECT_LE(a.score, 1.0);
  }
  for (size_t i = 1; i < answers.size(); ++i) EXPECT_GE(answers[i - 1].score, answers[i].score);
}

void expect_same_answers(const std::vector<Answer>& a, const std::vector<Answer>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].doc, b[i].doc) << what;
    EXPECT_EQ(a[i].start, b[i].start) << what;
    EXPECT_EQ(a[i].end, b[i].end) << what;
    EXPECT_NEAR(a[i].score, b[i].score, 1e-5) << what;
  }
}

TEST_F(ReaderTest, BothModesGiveWellFormedAnswers) {
  for (Mode mode : {Mode::kDeformer, Mode::kFull}) {
    ReaderOptions o;
    o.mode = mode;
    o.decode.top_k = 5;
    Reader reader(model_, o);
    auto answers = reader.ask("When was the lighthouse first lit?", docs_);
    ASSERT_EQ(answers.size(), 5u) << to_string(mode);
    expect_well_formed(answers, docs_);
  }
}

// An empty corpus is a normal case: no answers in either mode, for one question or many (it crashed in deformer mode).
TEST_F(ReaderTest, NoDocumentsGiveNoAnswers) {
  for (Mode mode : {Mode::kDeformer, Mode::kFull}) {
    ReaderOptions o;
    o.mode = mode;
    Reader reader(model_, o);
    EXPECT_TRUE(reader.ask("When was the lighthouse first lit?", {}).empty()) << to_string(mode);
    auto many = reader.ask(std::vector<std::string>{"Who?", "When?"}, std::vector<Document>{});
    ASSERT_EQ(many.size(), 2u) << to_string(mode);
    EXPECT_TRUE(many[0].empty() && many[1].empty()) << to_string(mode);
  }
}

TEST_F(ReaderTest, BatchSizeDoesNotChangeAnswers) {
  ReaderOptions small, large;
  small.batch_size = 1;
  large.batch_size = 64;
  small.decode.top_k = large.decode.top_k = 3;
  auto a = Reader(model_, small).ask("How long does bulk fermentation last?", docs_);
  auto b = Reader(model_, large).ask("How long does bulk fermentation last?", docs_);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].doc, b[i].doc);
    EXPECT_EQ(a[i].start, b[i].start);
    EXPECT_EQ(a[i].end, b[i].end);
    EXPECT_NEAR(a[i].score, b[i].score, 1e-6);
  }
}

// Several questions at once (documents encoded once, pairs batched) answer as each question alone does.
TEST_F(ReaderTest, ManyQuestionsAtOnceEqualOneAtATime) {
  for (Mode mode : {Mode::kDeformer, Mode::kFull}) {
    ReaderOptions o;
    o.mode = mode;
    o.batch_size = 5;
    o.decode.top_k = 2;
    Reader reader(model_, o);
    const std::vector<std::string> questions{"Who won the event seven times?", "What was built in 1952?",
                                             "How far can the light be seen?"};
    auto together = reader.ask(questions, docs_);
    ASSERT_EQ(together.size(), questions.size());
    for (size_t q = 0; q < questions.size(); ++q) {
      auto alone = reader.ask(questions[q], docs_);
      ASSERT_EQ(alone.size(), together[q].size());
      for (size_t i = 0; i < alone.size(); ++i) {
        EXPECT_EQ(alone[i].doc, together[q][i].doc) << to_string(mode);
        EXPECT_EQ(alone[i].start, together[q][i].start) << to_string(mode);
        EXPECT_NEAR(alone[i].score, together[q][i].score, 1e-6) << to_string(mode);
      }
    }
  }
}

// Independent questions over their own documents, batched across questions (and from a cache), answer as
// each question alone over its documents does; an unknown document id is refused.
TEST_F(ReaderTest, QueriesOverTheirOwnDocumentsEqualOneAtATime) {
  docs_.pop_back();  // the long document costs seconds per call here; batches still mix questions
  const std::vector<Query> queries{{"Who won the event seven times?", {"bread"}},
                                   {"What was built in 1952?", {"lighthouse"}},
                                   {"How long does bulk fermentation last?", {"bread", "lighthouse"}},
                                   {"How far can the light be seen?", {}}};
  auto own_documents = [&](const Query& q) {
    if (q.doc_ids.empty()) return docs_;
    std::vector<Document> docs;
    for (const auto& id : q.doc_ids)
      for (const auto& d : docs_)
        if (d.id == id) docs.push_back(d);
    return docs;
  };
  for (Mode mode : {Mode::kDeformer, Mode::kFull}) {
    ReaderOptions o;
    o.mode = mode;
    o.batch_size = 4;  // batches mix questions
    o.decode.top_k = 2;
    Reader reader(model_, o);
    auto together = reader.ask(queries, docs_);
    ASSERT_EQ(together.size(), queries.size());
    for (size_t q = 0; q < queries.size(); ++q) {
      expect_same_answers(reader.ask(queries[q].question, own_documents(queries[q])), together[q], std::string(to_string(mode)) + " q" + std::to_string(q));
      for (const auto& a : together[q]) {
        auto docs = own_documents(queries[q]);
        EXPECT_TRUE(std::any_of(docs.begin(), docs.end(), [&](const Document& d) { return d.id == a.doc; }));
      }
    }
    EXPECT_THROW(reader.ask(std::vector<Query>{{"Who?", {"nope"}}}, docs_), std::invalid_argument);
  }
  const std::string path = (std::filesystem::temp_directory_path() / ("reader-queries-" + std::to_string(::getpid()) + ".h5")).string();
  {
    CacheBuilder builder(model_, path, {});
    for (const auto& d : docs_) builder.add(d);
    builder.commit();
  }
  ReaderOptions o;
  o.batch_size = 3;
  o.decode.top_k = 2;
  Reader reader(model_, o);
  auto cache = cache::CacheReader::open(path, expected_cache_metadata(*model_, reader.split_layer()));
  auto raw = reader.ask(queries, docs_);
  auto cached = reader.ask(queries, *cache);
  for (size_t q = 0; q < queries.size(); ++q) expect_same_answers(raw[q], cached[q], "cached q" + std::to_string(q));
  std::remove(path.c_str());
}

// Deformer mode over a cache equals deformer mode over the raw text (fp32 storage), and a cache made for
// another split is refused.
TEST_F(ReaderTest, CachedDocumentsAnswerAsRawText) {
  const std::string path = (std::filesystem::temp_directory_path() / ("reader-cache-" + std::to_string(::getpid()) + ".h5")).string();
  CacheBuildOptions build;
  build.batch_size = 3;  // several flushes across documents
  CacheBuilder builder(model_, path, build);
  for (const auto& d : docs_) builder.add(d);
  builder.commit();
  EXPECT_EQ(builder.documents(), 3);

  ReaderOptions o;
  o.decode.top_k = 3;
  Reader reader(model_, o);
  auto cache = cache::CacheReader::open(path, expected_cache_metadata(*model_, reader.split_layer()));
  const std::vector<std::string> questions{"When was the lamp replaced?", "Who won the event seven times?"};
  for (Decoding decoding : {Decoding::kPipeline, Decoding::kSquad}) {
    ReaderOptions od = o;
    od.decode.decoding = decoding;
    Reader r(model_, od);
    for (const auto& docs : {docs_, std::vector<Document>{docs_.back()}}) {
      std::vector<std::string> ids;
      for (const auto& d : docs) ids.push_back(d.id);
      auto raw = r.ask(questions, docs);
      auto cached = r.ask(questions, *cache, ids);
      ASSERT_EQ(raw.size(), cached.size());
      for (size_t q = 0; q < raw.size(); ++q) {
        ASSERT_EQ(raw[q].size(), cached[q].size());
        ASSERT_FALSE(raw[q].empty());
        for (size_t i = 0; i < raw[q].size(); ++i) {
          EXPECT_EQ(raw[q][i].doc, cached[q][i].doc);
          EXPECT_EQ(raw[q][i].start, cached[q][i].start) << "decoding " << int(decoding) << " docs " << docs.size() << " q " << q << " i " << i;
          EXPECT_EQ(raw[q][i].end, cached[q][i].end);
          EXPECT_EQ(raw[q][i].answer, cached[q][i].answer);
          EXPECT_NEAR(raw[q][i].score, cached[q][i].score, 1e-5);
        }
      }
    }
  }
  auto one = reader.ask(questions, *cache, {"bread"});
  for (const auto& a : one[0]) EXPECT_EQ(a.doc, "bread");
  EXPECT_THROW(reader.ask(questions, *cache, {"nope"}), std::invalid_argument);

  ReaderOptions other = o;
  other.k = reader.split_layer() - 1;
  EXPECT_THROW(Reader(model_, other).ask(questions, *cache), std::invalid_argument);
  try {
    cache::CacheReader::open(path, expected_cache_metadata(*model_, other.k));
    FAIL() << "a cache of another k must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("k is"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// A cache records each token's word, so cached documents are not re-tokenized; a cache written without words (as
// before they were stored) has its documents tokenized again, and answers the same.
TEST_F(ReaderTest, CacheWithoutWordIndicesAnswersTheSame) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string with_path = (dir / ("reader-words-" + std::to_string(::getpid()) + ".h5")).string();
  const std::string without_path = (dir / ("reader-nowords-" + std::to_string(::getpid()) + ".h5")).string();
  Reader reader(model_, {});
  {
    CacheBuilder builder(model_, with_path, {});
    for (const auto& d : docs_) builder.add(d);
    builder.commit();
  }
  auto with = cache::CacheReader::open(with_path);
  {
    auto writer = cache::CacheWriter::create(without_path, with->metadata());
    for (int64_t i = 0; i < with->num_documents(); ++i) {
      const auto& info = with->document(i);
      std::vector<int64_t> windows;
      for (int64_t w = 0; w < info.num_windows; ++w) windows.push_back(info.first_window + w);
      std::vector<float> states(windows.size() * with->window_floats());
      with->read_windows(windows, states.data());
      std::vector<cache::WindowStates> ws;
      for (size_t w = 0; w < windows.size(); ++w)
        ws.push_back({with->window(windows[w]).tokens, with->window(windows[w]).rows, states.data() + w * with->window_floats()});
      writer->add_document(info.id, with->document_text(i), with->token_offsets(i), ws);
    }
    writer->commit();
  }
  auto without = cache::CacheReader::open(without_path);
  ASSERT_FALSE(with->token_words(0).empty());
  EXPECT_TRUE(without->token_words(0).empty());
  const std::vector<std::string> questions{"When was the lamp replaced?", "Who won the event seven times?"};
  auto a = reader.ask(questions, *with), b = reader.ask(questions, *without);
  ASSERT_EQ(a.size(), b.size());
  for (size_t q = 0; q < a.size(); ++q) expect_same_answers(a[q], b[q], "q" + std::to_string(q));
  std::filesystem::remove(with_path);
  std::filesystem::remove(without_path);
}

// Splitting a call into passes by length (pass_cost_tokens) changes the padding, never the answers.
TEST_F(ReaderTest, PassPlanDoesNotChangeAnswers) {
  const std::vector<std::string> questions{"Who won the event seven times?", "What was built in 1952?",
                                           "How long does bulk fermentation last, and at what temperature does it work best?"};
  for (Mode mode : {Mode::kDeformer, Mode::kFull}) {
    ReaderOptions one_pass, by_length;
    one_pass.mode = by_length.mode = mode;
    one_pass.batch_size = by_length.batch_size = 64;
    one_pass.pass_cost_tokens = 1 << 30;  // a pass dearer than any padding: one pass per call
    by_length.pass_cost_tokens = 0;       // no padding at all
    one_pass.decode.top_k = by_length.decode.top_k = 3;
    std::vector<std::string> phases;
    by_length.on_phase = [&](const char* phase, double seconds) {
      EXPECT_GE(seconds, 0.0);
      phases.push_back(phase);
    };
    auto a = Reader(model_, one_pass).ask(questions, docs_);
    auto b = Reader(model_, by_length).ask(questions, docs_);
    for (size_t q = 0; q < questions.size(); ++q) expect_same_answers(a[q], b[q], std::string(to_string(mode)) + " q" + std::to_string(q));
    const std::vector<std::string> expected =
        mode == Mode::kFull ? std::vector<std::string>{"tokenize", "documents", "layers", "decode"}
                            : std::vector<std::string>{"tokenize", "lower_layers", "documents", "lower_layers", "upper_layers", "decode"};
    EXPECT_EQ(phases, expected) << to_string(mode);
  }
}

// A cache held on the model's device (here the CPU) answers as the file does, and names the phase it replaces.
TEST_F(ReaderTest, ResidentCacheAnswersAsTheFile) {
  const std::string path = (std::filesystem::temp_directory_path() / ("reader-resident-" + std::to_string(::getpid()) + ".h5")).string();
  {
    CacheBuildOptions build;
    build.dtype = cache::StateDType::kFloat16;  // converted to the model's fp32 on the way in
    CacheBuilder builder(model_, path, build);
    for (const auto& d : docs_) builder.add(d);
    builder.commit();
  }
  ReaderOptions o;
  o.batch_size = 4;
  o.decode.top_k = 3;
  std::vector<std::string> phases;
  o.on_phase = [&](const char* phase, double) { phases.push_back(phase); };
  Reader reader(model_, o);
  auto cache = cache::CacheReader::open(path, expected_cache_metadata(*model_, reader.split_layer()));
  ResidentCache resident(*cache, model_);
  int64_t rows = 0;
  for (int64_t w = 0; w < cache->num_windows(); ++w) rows += cache->window(w).rows;
  EXPECT_EQ(resident.bytes(), (rows + 1) * model_->config().hidden_size * 4);
  const std::vector<Query> queries{{"When was the lamp replaced?", {"lighthouse"}},
                                   {"Who won the event seven times?", {"all", "bread"}},
                                   {"How long does bulk fermentation last?", {}}};
  auto from_file = reader.ask(queries, *cache);
  phases.clear();
  auto held = reader.ask(queries, resident);
  for (size_t q = 0; q < queries.size(); ++q) expect_same_answers(from_file[q], held[q], "q" + std::to_string(q));
  EXPECT_EQ(phases, (std::vector<std::string>{"tokenize", "lower_layers", "documents", "cache_read", "upper_layers", "decode"}));
  // Windows serving one pair each are read from the file pass by pass (unless profiling): the same answers.
  const std::vector<Query> own{{"When was the lamp replaced?", {"lighthouse"}},
                               {"Who won the event seven times?", {"all"}},
                               {"How long does bulk fermentation last?", {"bread"}}};
  ReaderOptions plain = o;
  plain.on_phase = nullptr;
  plain.pass_cost_tokens = 0;  // a pass per length
  Reader streaming(model_, plain);
  auto streamed = streaming.ask(own, *cache), gathered = streaming.ask(own, resident);
  for (size_t q = 0; q < own.size(); ++q) expect_same_answers(streamed[q], gathered[q], "own q" + std::to_string(q));
  EXPECT_THROW(reader.ask(std::vector<Query>{{"Who?", {"nope"}}}, resident), std::invalid_argument);
  ReaderOptions other;
  other.k = reader.split_layer() - 1;
  EXPECT_THROW(Reader(model_, other).ask(queries, resident), std::invalid_argument);
  std::filesystem::remove(path);
}

TEST_F(ReaderTest, ImpossibleAnswerIsOffered) {
  ReaderOptions o;
  o.decode.handle_impossible_answer = true;
  o.decode.top_k = 100000;  // every candidate, so the null answer must appear, once
  auto answers = Reader(model_, o).ask("Who won?", docs_);
  int nulls = 0;
  for (const auto& a : answers) nulls += a.doc.empty() && a.answer.empty() && a.start == 0 && a.end == 0;
  EXPECT_EQ(nulls, 1);
}

TEST_F(ReaderTest, LongQuestionIsTruncatedWithAWarning) {
  std::vector<std::string> warnings;
  ReaderOptions o;
  o.warn = [&](const std::string& w) { warnings.push_back(w); };
  std::string question;
  for (int i = 0; i < 40; ++i) question += "lighthouse ";
  auto answers = Reader(model_, o).ask(question, docs_);
  EXPECT_FALSE(answers.empty());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("cut to the question block"), std::string::npos) << warnings[0];
}

TEST_F(ReaderTest, BadInputsAreRejectedClearly) {
  Reader reader(model_);
  auto message = [&](const std::string& q, const std::vector<Document>& d) {
    try {
      reader.ask(q, d);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("", docs_).find("question is empty"), std::string::npos);
  EXPECT_NE(message("   ", docs_).find("question is empty"), std::string::npos);
  EXPECT_NE(message("who?", {{"e", ""}}).find("document 'e' is empty"), std::string::npos);
  EXPECT_NE(message("who?", {{"a", "x y"}, {"a", "z"}}).find("duplicate document id 'a'"), std::string::npos);
  EXPECT_NE(message("who?", {{"bad", "caf\xC3"}}).find("document 'bad'"), std::string::npos);
  EXPECT_NE(message("wh\xFFo?", docs_).find("question"), std::string::npos);

  ReaderOptions o;
  o.decode.top_k = 0;
  EXPECT_THROW(Reader(model_, o), std::invalid_argument);
  o.decode.top_k = 1;
  o.k = model_->config().num_layers + 1;
  EXPECT_THROW(Reader(model_, o), std::invalid_argument);
  EXPECT_THROW(parse_mode("half"), std::invalid_argument);
}

}  // namespace
}  // namespace deformer
