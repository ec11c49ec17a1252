// XLNet in deformer and full mode on the tiny XLNet fixture (random weights, xlnet-base-cased's spiece.model):
// the invariants of docs/design.md ('Invariants') with XLNet's layout (docs/xlnet.md), and cached answers equal to
// raw ones.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdio>
#include <unistd.h>

#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/model.h"
#include "deformer/reader.h"
#include "test_data.h"

namespace deformer {
namespace {

at::Tensor row(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong).unsqueeze(0); }

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

class XLNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::fixture("tiny-xlnet.pt");
    DEFORMER_REQUIRE_FILE(path_);
    model_ = Model::load(path_);
    n_ = model_->config().num_layers;
    // xlnet-base-cased's special pieces; the tokenizer tests check them against the spiece model.
    special_.unk = 0;
    special_.cls = 3;
    special_.sep = 4;
    special_.pad = 5;
  }
  std::vector<int64_t> tokens(int count, int seed) const {
    std::vector<int64_t> ids(count);
    for (int i = 0; i < count; ++i) ids[i] = 10 + (seed * 131 + i * 37) % (model_->config().vocab_size - 10);
    return ids;
  }
  at::Tensor q_block(const std::vector<int64_t>& q) const {
    return row(question_block(q, model_->config().question_block, special_, Convention::kXLNet).input_ids);
  }
  at::Tensor d_block(const std::vector<int64_t>& w) const {
    return row(document_block(w, model_->config().document_block, special_, Convention::kXLNet).input_ids);
  }
  at::Tensor deformer_logits(const at::Tensor& q, const at::Tensor& d, int k) const {
    return engine::answer_logits(*model_, engine::encode_questions(*model_, q, k), q, engine::encode_documents(*model_, d, k), d, k);
  }

  std::string path_;
  std::shared_ptr<const Model> model_;
  int n_ = 0;
  SpecialTokens special_;
};

TEST_F(XLNetTest, ModelFileDeclaresXLNet) {
  const auto& c = model_->config();
  EXPECT_EQ(c.model_type, "xlnet");
  EXPECT_EQ(c.architecture, "XLNetForQuestionAnsweringSimple");
  EXPECT_EQ(c.tokenizer_type, "sentencepiece");
  EXPECT_EQ(c.pad_token_id, 5);
  EXPECT_EQ(convention_of(c), Convention::kXLNet);
  EXPECT_GT(model_->vocabulary().size(), 100000u) << "spiece.model is embedded";
}

// Invariant 1: k = 0 equals one joint pass over the deformer layout, which for XLNet is HF's sequence
// window <sep> question <sep> <cls> (segments 0, 1, 2): the full-mode path on an unpadded row must agree.
TEST_F(XLNetTest, SplitAtZeroEqualsJointPassOverTheSameSequence) {
  const auto question = tokens(9, 1), window = tokens(120, 2);
  const auto split = deformer_logits(q_block(question), d_block(window), 0);
  const int length = static_cast<int>(question.size() + window.size() + 3);
  auto full = full_block(question, window, length, 64, special_, Convention::kXLNet);
  const auto joint = engine::full_logits(*model_, row(full.input_ids), row(full.token_type_ids), row(full.attention_mask));
  const int64_t r = window.size() + 1, db = model_->config().document_block;
  EXPECT_LT(max_abs_diff(split.slice(1, 0, r), joint.slice(1, 0, r)), 1e-5);
  EXPECT_LT(max_abs_diff(split.slice(1, db, db + int64_t(question.size()) + 2), joint.slice(1, r, length)), 1e-5);
}

// Invariant 2: k = n gives each block's own full-depth states, and layer ranges compose.
TEST_F(XLNetTest, SplitAtNEncodesEachBlockAloneAndRangesCompose) {
  auto d = d_block(tokens(200, 3));
  auto at_n = engine::encode_documents(*model_, d, n_);
  const int64_t len = d.size(1);
  auto positions = at::arange(len, at::kLong).unsqueeze(0), segments = at::zeros({1, len}, at::kLong);
  auto mask = d.ne(special_.pad).to(at::kLong);
  auto hidden = engine::embed(*model_, d, segments, positions);
  for (int i = 0; i < n_; ++i) hidden = engine::run_layers(*model_, hidden, mask, segments, positions, i, i + 1);
  EXPECT_LT(max_abs_diff(at_n, hidden), 1e-6);
  for (int k = 0; k <= n_; ++k) {
    auto upper = engine::run_layers(*model_, engine::encode_documents(*model_, d, k), mask, segments, positions, k, n_);
    EXPECT_LT(max_abs_diff(upper, at_n), 1e-5) << "k=" << k;
  }
  EXPECT_THROW(engine::run_layers(*model_, hidden, mask, 0, 1), std::invalid_argument);
}

// Invariant 3: layer-k document states do not depend on the question, while the answer does.
TEST_F(XLNetTest, DocumentStatesAreIndependentOfTheQuestion) {
  const int k = n_ / 2;
  auto d = d_block(tokens(150, 4));
  auto a = engine::encode_documents(*model_, d, k), b = engine::encode_documents(*model_, d, k);
  EXPECT_TRUE(at::equal(a, b));
  auto short_q = q_block(tokens(3, 5)), long_q = q_block(tokens(25, 6));
  auto la = engine::answer_logits(*model_, engine::encode_questions(*model_, short_q, k), short_q, a, d, k);
  auto lb = engine::answer_logits(*model_, engine::encode_questions(*model_, long_q, k), long_q, b, d, k);
  EXPECT_GT(max_abs_diff(la.slice(1, 0, 151), lb.slice(1, 0, 151)), 1e-3) << "the question must matter above k";
}

// Invariant 5: padding never changes real-token outputs: a document block against the unpadded window, and
// HF's left-padded full mode at two lengths (real tokens shift right with the padding).
TEST_F(XLNetTest, PaddingDoesNotChangeRealTokens) {
  auto window = tokens(40, 7);
  auto padded = engine::encode_documents(*model_, d_block(window), n_);
  std::vector<int64_t> exact(window);
  exact.push_back(special_.sep);
  const int64_t len = exact.size();
  auto segments = at::zeros({1, len}, at::kLong), positions = at::arange(len, at::kLong).unsqueeze(0);
  auto unpadded = engine::run_layers(*model_, engine::embed(*model_, row(exact), segments, positions),
                                     at::ones({1, len}, at::kLong), segments, positions, 0, n_);
  EXPECT_LT(max_abs_diff(padded.slice(1, 0, len), unpadded), 1e-5);

  auto question = tokens(8, 8);
  const int64_t real = question.size() + window.size() + 3;
  auto short_row = full_block(question, window, 60, 64, special_, Convention::kXLNet);
  auto long_row = full_block(question, window, 384, 64, special_, Convention::kXLNet);
  EXPECT_EQ(short_row.context_begin, 60 - real);
  EXPECT_EQ(long_row.cls_position, 383);
  auto logits_short = engine::full_logits(*model_, row(short_row.input_ids), row(short_row.token_type_ids), row(short_row.attention_mask));
  auto logits_long = engine::full_logits(*model_, row(long_row.input_ids), row(long_row.token_type_ids), row(long_row.attention_mask));
  EXPECT_LT(max_abs_diff(logits_short.slice(1, 60 - real), logits_long.slice(1, 384 - real)), 1e-5);
}

// Invariant 6: the parameter count equals HF XLNetForQuestionAnsweringSimple's for the fixture's shape.
TEST_F(XLNetTest, ParameterCountEqualsTheSourceModel) {
  const auto& c = model_->config();
  const int64_t d = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  // Per layer: q, k, v, o, r [d, d]; r_r/r_s/r_w biases [d]; seg_embed [2, d]; two LayerNorms; the feed-forward.
  const int64_t per_layer = 5 * d * d + 3 * d + 2 * d + 4 * d + (d * f + f) + (f * d + d);
  EXPECT_EQ(model_->parameter_count(), v * d + d + c.num_layers * per_layer + 2 * d + 2);
}

// Invariant 4 end to end: answers from a cache built by CacheBuilder equal answers computed from raw text.
TEST_F(XLNetTest, CachedAnswersEqualRawTextAnswers) {
  std::vector<Document> docs{
      {"river", "The Vell rises in the Karst hills above Ostrava and flows north for 212 kilometres before it joins the "
                "Oder. Its upper valley was settled by charcoal burners in the fourteenth century."},
      {"lamp", "The lighthouse keeper, Marta Ilves, lit the lamp every evening at dusk for thirty-one years."}};
  const std::vector<std::string> questions{"Who lit the lamp?", "Where does the Vell rise?"};
  char dir[] = "/tmp/deformer-xlnet-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/docs.h5";
  const int k = 2;
  {
    CacheBuildOptions options;
    options.k = k;
    CacheBuilder builder(model_, path, options);
    for (const auto& d : docs) builder.add(d);
    builder.commit();
  }
  ReaderOptions options;
  options.k = k;
  options.decode.top_k = 3;
  Reader reader(model_, options);
  auto cache = cache::CacheReader::open(path, expected_cache_metadata(*model_, k));
  EXPECT_EQ(cache->metadata().model_type, "xlnet");
  EXPECT_EQ(cache->metadata().joint_order, "document,question");
  const auto raw = reader.ask(questions, docs);
  const auto cached = reader.ask(questions, *cache);
  ASSERT_EQ(raw.size(), cached.size());
  for (size_t q = 0; q < raw.size(); ++q) {
    ASSERT_EQ(raw[q].size(), cached[q].size());
    ASSERT_FALSE(raw[q].empty());
    for (size_t i = 0; i < raw[q].size(); ++i) {
      EXPECT_EQ(raw[q][i].doc, cached[q][i].doc);
      EXPECT_EQ(raw[q][i].start, cached[q][i].start);
      EXPECT_EQ(raw[q][i].end, cached[q][i].end);
      EXPECT_EQ(raw[q][i].score, cached[q][i].score);
    }
  }
  // Full mode answers too, with spans inside the document text.
  options.mode = Mode::kFull;
  const auto full = Reader(model_, options).ask(questions, docs);
  for (const auto& answers : full)
    for (const auto& a : answers) {
      if (a.doc.empty()) continue;
      EXPECT_LT(a.start, a.end);
      EXPECT_EQ(a.answer.empty(), false);
    }
  std::remove(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace deformer
