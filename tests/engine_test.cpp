// The invariants of docs/design.md ('Invariants') on the fixture model, and the loader's errors.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <fstream>
#include <thread>
#include <tuple>

#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/model.h"
#include "deformer/tokenizer.h"
#include "model_impl.h"
#include "test_data.h"

namespace deformer {
namespace {

using testing::fixture;

at::Tensor row(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong).unsqueeze(0); }

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fixture("tiny-own-vocab.pt");
    DEFORMER_REQUIRE_FILE(path_);
    model_ = Model::load(path_);
    n_ = model_->config().num_layers;
    special_ = make_tokenizer(*model_)->special_tokens();
  }
  // Token ids of ordinary pieces (not specials) drawn deterministically.
  std::vector<int64_t> tokens(int count, int seed) const {
    std::vector<int64_t> ids(count);
    for (int i = 0; i < count; ++i) ids[i] = 5 + (seed * 131 + i * 37) % (model_->config().vocab_size - 5);
    return ids;
  }
  at::Tensor q_block(int len, int seed) const {
    return row(question_block(tokens(len, seed), model_->config().question_block, special_).input_ids);
  }
  at::Tensor d_block(int len, int seed) const {
    return row(document_block(tokens(len, seed), model_->config().document_block, special_).input_ids);
  }

  std::string path_;
  std::shared_ptr<const Model> model_;
  int n_ = 0;
  SpecialTokens special_;
};

// Invariant 1: k = 0 equals one joint pass over the 320-token deformer layout.
TEST_F(EngineTest, SplitAtZeroEqualsJointPassOverDeformerLayout) {
  auto q = q_block(9, 1), d = d_block(120, 2);
  auto split = engine::answer_logits(*model_, engine::encode_questions(*model_, q, 0), q,
                                     engine::encode_documents(*model_, d, 0), d, 0);
  const int64_t qb = q.size(1), db = d.size(1);
  auto ids = at::cat({q, d}, 1);
  auto types = at::cat({at::zeros({1, qb}, at::kLong), at::ones({1, db}, at::kLong)}, 1);
  auto positions = at::cat({at::arange(qb, at::kLong), at::arange(db, at::kLong)}).unsqueeze(0);
  auto hidden = engine::embed(*model_, ids, types, positions);
  auto joint = engine::qa_logits(*model_, engine::run_layers(*model_, hidden, ids.ne(0).to(at::kLong), 0, n_));
  EXPECT_LT(max_abs_diff(split, joint), 1e-5);
}

// Invariant 2: k = n gives each block's own full-depth states, and layer ranges compose.
TEST_F(EngineTest, SplitAtNEncodesEachBlockAloneAndRangesCompose) {
  auto d = d_block(200, 3);
  auto at_n = engine::encode_documents(*model_, d, n_);
  const int64_t len = d.size(1);
  auto hidden = engine::embed(*model_, d, at::ones({1, len}, at::kLong), at::arange(len, at::kLong).unsqueeze(0));
  auto mask = d.ne(0).to(at::kLong);
  for (int i = 0; i < n_; ++i) hidden = engine::run_layers(*model_, hidden, mask, i, i + 1);
  EXPECT_LT(max_abs_diff(at_n, hidden), 1e-6);
  for (int k = 0; k <= n_; ++k) {
    auto lower = engine::encode_documents(*model_, d, k);
    auto upper = engine::run_layers(*model_, lower, mask, k, n_);
    EXPECT_LT(max_abs_diff(upper, at_n), 1e-5) << "k=" << k;
  }
}

// Invariant 3: layer-k document states do not depend on the question, while the answer does.
TEST_F(EngineTest, DocumentStatesAreIndependentOfTheQuestion) {
  const int k = n_ / 2;
  auto d = d_block(150, 4);
  auto short_q = q_block(3, 5), long_q = q_block(25, 6);
  auto states_a = engine::encode_documents(*model_, d, k);
  auto states_b = engine::encode_documents(*model_, d, k);
  EXPECT_TRUE(at::equal(states_a, states_b));
  auto logits_a = engine::answer_logits(*model_, engine::encode_questions(*model_, short_q, k), short_q, states_a, d, k);
  auto logits_b = engine::answer_logits(*model_, engine::encode_questions(*model_, long_q, k), long_q, states_b, d, k);
  EXPECT_GT(max_abs_diff(logits_a, logits_b), 1e-3) << "the question must still matter in the upper layers";

  // Contrast: in a joint pass (k = 0 layout run to depth k) the document's layer-k states do change.
  auto joint_states = [&](const at::Tensor& q) {
    auto ids = at::cat({q, d}, 1);
    const int64_t qb = q.size(1), db = d.size(1);
    auto types = at::cat({at::zeros({1, qb}, at::kLong), at::ones({1, db}, at::kLong)}, 1);
    auto positions = at::cat({at::arange(qb, at::kLong), at::arange(db, at::kLong)}).unsqueeze(0);
    auto h = engine::run_layers(*model_, engine::embed(*model_, ids, types, positions), ids.ne(0).to(at::kLong), 0, k);
    return h.slice(1, qb);
  };
  EXPECT_GT(max_abs_diff(joint_states(short_q), joint_states(long_q)), 1e-4);
}

// Invariant 5: padding never changes real-token outputs (deformer blocks and full mode).
TEST_F(EngineTest, PaddingDoesNotChangeRealTokens) {
  auto window = tokens(40, 7);
  auto padded = engine::encode_documents(*model_, d_block(40, 7), n_);
  std::vector<int64_t> exact(window);
  exact.push_back(special_.sep);
  const int64_t len = exact.size();
  auto ids = row(exact);
  auto hidden = engine::embed(*model_, ids, at::ones({1, len}, at::kLong), at::arange(len, at::kLong).unsqueeze(0));
  auto unpadded = engine::run_layers(*model_, hidden, at::ones({1, len}, at::kLong), 0, n_);
  EXPECT_LT(max_abs_diff(padded.slice(1, 0, len), unpadded), 1e-5);

  auto question = tokens(8, 8);
  auto full_short = full_block(question, window, 60, 64, special_);
  auto full_long = full_block(question, window, 384, 64, special_);
  auto logits_short = engine::full_logits(*model_, row(full_short.input_ids), row(full_short.token_type_ids),
                                          row(full_short.attention_mask));
  auto logits_long = engine::full_logits(*model_, row(full_long.input_ids), row(full_long.token_type_ids),
                                         row(full_long.attention_mask));
  const int64_t real = question.size() + window.size() + 3;
  EXPECT_LT(max_abs_diff(logits_short.slice(1, 0, real), logits_long.slice(1, 0, real)), 1e-5);
}

// Invariant 6: decomposition adds no weights; the count equals BERT's formula for the source shape.
TEST_F(EngineTest, ParameterCountEqualsTheSourceModel) {
  const auto& c = model_->config();
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const int64_t embeddings = (int64_t(c.vocab_size) + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h;
  const int64_t layer = 4 * (h * h + h) + 2 * 2 * h + (h * f + f) + (f * h + h);
  const int64_t head = 2 * h + 2;
  EXPECT_EQ(model_->parameter_count(), embeddings + c.num_layers * layer + head);
}

// Batched rows are computed independently: a document's states do not depend on its batch neighbours.
TEST_F(EngineTest, BatchRowsAreIndependent) {
  auto a = d_block(100, 9), b = d_block(250, 10);
  auto alone = engine::encode_documents(*model_, a, 2);
  auto batched = engine::encode_documents(*model_, at::cat({a, b}), 2);
  EXPECT_LT(max_abs_diff(alone[0], batched[0]), 1e-5);
}

TEST_F(EngineTest, SplitOutOfRangeIsRejected) {
  auto q = q_block(5, 1);
  EXPECT_THROW(engine::encode_questions(*model_, q, -1), std::invalid_argument);
  EXPECT_THROW(engine::encode_questions(*model_, q, n_ + 1), std::invalid_argument);
  try {
    engine::check_split(*model_, n_ + 1);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("out of range 0.." + std::to_string(n_)), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine::encode_questions(*model_, d_block(5, 1), 1), std::invalid_argument);  // wrong block length
}

// --- loader errors ---

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("deformer-test-" + std::to_string(::getpid()) + "-" + name)).string();
}

TEST(ModelLoad, MissingFile) {
  EXPECT_NE(load_error("/nonexistent/model.pt").find("cannot open model file"), std::string::npos);
}

TEST(ModelLoad, CorruptFile) {
  auto path = temp_path("corrupt.pt");
  std::ofstream(path) << "this is not a zip archive";
  EXPECT_NE(load_error(path).find("not a readable TorchScript model file"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(ModelLoad, TruncatedFile) {
  auto source = fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(source);
  auto path = temp_path("truncated.pt");
  std::filesystem::copy_file(source, path, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  EXPECT_NE(load_error(path).find("not a readable TorchScript model file"), std::string::npos);
  std::filesystem::remove(path);
}

// Re-saves the fixture with altered extra files.
std::string resaved(const std::string& name, const std::string& version, const std::string& model_type) {
  auto source = fixture("tiny-own-vocab.pt");
  torch::jit::ExtraFilesMap extra{{"deformer/config.json", ""}, {"deformer/vocab.txt", ""}, {"deformer/content_hash", ""}};
  auto module = torch::jit::load(source, c10::Device(c10::kCPU), extra);
  if (!version.empty()) extra["deformer/format_version"] = version;
  auto& config = extra["deformer/config.json"];
  auto pos = config.find("\"bert\",");
  if (pos != std::string::npos) config.replace(pos, 7, "\"" + model_type + "\",");
  auto path = temp_path(name);
  module.save(path, extra);
  return path;
}

TEST(ModelLoad, NotADeformerModel) {
  DEFORMER_REQUIRE_FILE(fixture("tiny-own-vocab.pt"));
  auto path = resaved("plain.pt", "", "bert");
  EXPECT_NE(load_error(path).find("not a libdeformer model"), std::string::npos) << load_error(path);
  std::filesystem::remove(path);
}

TEST(ModelLoad, UnknownFormatVersion) {
  DEFORMER_REQUIRE_FILE(fixture("tiny-own-vocab.pt"));
  auto path = resaved("v99.pt", "99", "bert");
  EXPECT_NE(load_error(path).find("format version 99"), std::string::npos) << load_error(path);
  std::filesystem::remove(path);
}

TEST(ModelLoad, WrongModelType) {
  DEFORMER_REQUIRE_FILE(fixture("tiny-own-vocab.pt"));
  auto path = resaved("gpt.pt", "1", "gpt2");
  EXPECT_NE(load_error(path).find("unsupported model type 'gpt2'"), std::string::npos) << load_error(path);
  std::filesystem::remove(path);
}

TEST(ModelLoad, BadOptions) {
  EXPECT_THROW(parse_device("tpu"), std::invalid_argument);
  EXPECT_THROW(parse_dtype("fp8"), std::invalid_argument);
}

}  // namespace
}  // namespace deformer

namespace deformer {
namespace {

// The same model on CUDA (fp32, fp16, bf16) agrees with the CPU fp32 forward; skipped without a GPU.
TEST(EngineCuda, MatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "skipped: no CUDA device in this build or machine";
  auto path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  auto cpu = Model::load(path);
  const SpecialTokens special = make_tokenizer(*cpu)->special_tokens();
  std::vector<int64_t> q{5, 9, 14, 30}, w;
  for (int i = 0; i < 200; ++i) w.push_back(5 + (i * 37) % (cpu->config().vocab_size - 5));
  auto qb = question_block(q, cpu->config().question_block, special);
  auto db = document_block(w, cpu->config().document_block, special);
  auto q_ids = torch::tensor(qb.input_ids, torch::kLong).unsqueeze(0);
  auto d_ids = torch::tensor(db.input_ids, torch::kLong).unsqueeze(0);
  const int k = cpu->config().num_layers / 2;
  auto reference = engine::answer_logits(*cpu, engine::encode_questions(*cpu, q_ids, k), q_ids,
                                         engine::encode_documents(*cpu, d_ids, k), d_ids, k);
  for (auto [dtype, tolerance] : {std::pair{DType::kFloat32, 1e-4}, {DType::kFloat16, 2e-2}, {DType::kBFloat16, 1e-1}}) {
    LoadOptions options;
    options.device = Device::kCUDA;
    options.dtype = dtype;
    auto gpu = Model::load(path, options);
    auto qc = q_ids.cuda(), dc = d_ids.cuda();
    auto logits = engine::answer_logits(*gpu, engine::encode_questions(*gpu, qc, k), qc,
                                        engine::encode_documents(*gpu, dc, k), dc, k);
    const double diff = (logits.cpu() - reference).abs().max().item<double>();
    std::cout << "cuda " << to_string(dtype) << " max|d| vs cpu fp32: " << diff << std::endl;
    EXPECT_LT(diff, tolerance) << to_string(dtype);
  }
}

// The native layers (direct ATen calls, fused query/key/value and attention) compute what the model file's
// TorchScript methods compute, in every piece the engine exposes.
// Question blocks packed two to a row (attention kept within each question, positions restarting) give each
// question the states of its block encoded alone.
TEST(EngineNative, PackedQuestionsEqualEachAlone) {
  auto path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  LoadOptions scripted_options;
  scripted_options.native_layers = false;
  auto model = Model::load(path);
  ASSERT_TRUE(engine::can_pack_questions(*model));
  EXPECT_FALSE(engine::can_pack_questions(*Model::load(path, scripted_options)));
  const SpecialTokens special = make_tokenizer(*model)->special_tokens();
  const std::vector<std::vector<int64_t>> questions{{5, 9, 14, 30}, {7, 8, 40, 41, 42, 43, 44}, {12, 13, 14}};
  const int k = model->config().num_layers / 2;
  c10::InferenceMode guard;
  // Rows: [q0 | q1 | padding], [q2 | padding], with blocks [CLS] q [SEP].
  const int64_t length = 16;
  auto ids = torch::full({2, length}, model->config().pad_token_id, torch::kLong);
  auto positions = torch::zeros({2, length}, torch::kLong), segments = torch::full({2, length}, -1, torch::kLong);
  const std::vector<std::pair<int64_t, int64_t>> place{{0, 0}, {0, 6}, {1, 0}};  // (row, offset) of each block
  std::vector<at::Tensor> alone;
  for (size_t q = 0; q < questions.size(); ++q) {
    auto block = question_block(questions[q], questions[q].size() + 2, special);
    const int64_t n = block.input_ids.size(), r = place[q].first, o = place[q].second;
    ids[r].narrow(0, o, n).copy_(torch::tensor(block.input_ids, torch::kLong));
    positions[r].narrow(0, o, n).copy_(torch::arange(n));
    segments[r].narrow(0, o, n).fill_(static_cast<int64_t>(q));
    alone.push_back(engine::encode_questions(*model, torch::tensor(block.input_ids, torch::kLong).unsqueeze(0), k)[0]);
  }
  auto packed = engine::encode_packed_questions(*model, ids, positions, segments, k);
  ASSERT_EQ(packed.size(0), 2);
  for (size_t q = 0; q < questions.size(); ++q) {
    auto got = packed[place[q].first].narrow(0, place[q].second, alone[q].size(0));
    EXPECT_LT((got - alone[q]).abs().max().item<double>(), 1e-5) << "question " << q;
  }
  // Without the segments (one question per row) the states would differ: the check can fail.
  auto unsegmented = engine::encode_packed_questions(*model, ids, positions, ids.ne(model->config().pad_token_id).to(torch::kLong) - 1, k);
  EXPECT_GT((unsegmented[0].narrow(0, 0, alone[0].size(0)) - alone[0]).abs().max().item<double>(), 1e-3);
}

TEST(EngineNative, EqualsTheModelFilesTorchScriptMethods) {
  auto path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  LoadOptions scripted_options;
  scripted_options.native_layers = false;
  auto native = Model::load(path), scripted = Model::load(path, scripted_options);
  ASSERT_NE(native->impl().bert, nullptr);
  ASSERT_EQ(scripted->impl().bert, nullptr);
  EXPECT_EQ(native->parameter_count(), scripted->parameter_count());
  const auto& c = native->config();
  const SpecialTokens special = make_tokenizer(*native)->special_tokens();
  std::vector<std::vector<int64_t>> q_rows, d_rows;
  for (int r = 0; r < 3; ++r) {
    std::vector<int64_t> q, d;
    for (int i = 0; i < 4 + 7 * r; ++i) q.push_back(5 + (r * 131 + i * 37) % (c.vocab_size - 5));
    for (int i = 0; i < 60 + 90 * r; ++i) d.push_back(5 + (r * 71 + i * 13) % (c.vocab_size - 5));
    q_rows.push_back(question_block(q, c.question_block, special).input_ids);
    d_rows.push_back(document_block(d, c.document_block, special).input_ids);
  }
  auto stack = [](const std::vector<std::vector<int64_t>>& rows) {
    std::vector<at::Tensor> t;
    for (const auto& r : rows) t.push_back(torch::tensor(r, torch::kLong));
    return at::stack(t);
  };
  auto q = stack(q_rows), d = stack(d_rows).slice(1, 0, 241);  // a cut document block
  for (int k : {0, 1, c.num_layers - 1, c.num_layers}) {
    auto deformer = [&](const Model& m) {
      return engine::answer_logits(m, engine::encode_questions(m, q, k), q, engine::encode_documents(m, d, k), d, k);
    };
    EXPECT_LT(max_abs_diff(deformer(*native), deformer(*scripted)), 1e-5) << "k=" << k;
  }
  auto ids = at::cat({q, d}, 1);
  auto types = at::cat({at::zeros_like(q), at::ones_like(d)}, 1);
  auto mask = ids.ne(0).to(at::kLong);
  EXPECT_LT(max_abs_diff(engine::full_logits(*native, ids, types, mask), engine::full_logits(*scripted, ids, types, mask)), 1e-5);
}

}  // namespace
}  // namespace deformer

namespace deformer {
namespace {

// CUDA graphs (small batches) give the eager results: on first use (capture), on replay with new values, for
// shapes that pad to the same graph, and from several threads at once.
// The fused residual + LayerNorm kernel against ATen's add then layer_norm, in both 16-bit dtypes, on rows of
// BERT-base's width and of one it does not handle (which falls back to ATen).
TEST(EngineCuda, FusedAddLayerNormEqualsAten) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "skipped: no CUDA device in this build or machine";
  if (!native::fused_kernels_built()) GTEST_SKIP() << "skipped: built without a CUDA compiler (no fused kernels)";
  c10::InferenceMode guard;
  torch::manual_seed(0);
  for (auto dtype : {torch::kHalf, torch::kBFloat16})
    for (int64_t hidden : {768, 1024, 64}) {
      auto o = torch::TensorOptions(dtype).device(torch::kCUDA);
      auto a = torch::randn({3, 333, hidden}, o) * 3, b = torch::randn({3, 333, hidden}, o);
      auto w = torch::randn({hidden}, o), bias = torch::randn({hidden}, o);
      auto expected = at::layer_norm(a + b, {hidden}, w, bias, 1e-12).to(torch::kFloat);
      auto got = native::add_layer_norm(a.clone(), b, w, bias, 1e-12).to(torch::kFloat);
      // One rounding of the output apart at most (fp16: 2^-10 relative, bf16: 2^-7) on values of a few units.
      const double tolerance = dtype == torch::kHalf ? 1e-2 : 8e-2;
      EXPECT_LT((got - expected).abs().max().item<double>(), tolerance) << c10::toString(dtype) << " hidden " << hidden;
    }
}

TEST(EngineCuda, GraphReplaysEqualEagerCalls) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "skipped: no CUDA device in this build or machine";
  if (!cuda_graphs::GraphCache::available()) GTEST_SKIP() << "skipped: this build has no CUDA graphs";
  auto path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  for (auto [dtype, tolerance] : {std::pair{DType::kFloat32, 1e-4}, {DType::kFloat16, 2e-2}}) {
    LoadOptions options;
    options.device = Device::kCUDA;
    options.dtype = dtype;
    auto graphed = Model::load(path, options);
    options.cuda_graphs = false;
    auto eager = Model::load(path, options);
    ASSERT_NE(graphed->impl().graphs, nullptr);
    const auto& c = graphed->config();
    const int k = c.num_layers / 2;
    auto random_ids = [&](int64_t rows, int64_t length, int64_t real) {  // `real` tokens, then padding
      auto ids = torch::randint(5, c.vocab_size, {rows, length}, torch::TensorOptions(torch::kLong));
      ids.slice(1, real).fill_(0);
      return ids.cuda();
    };
    torch::manual_seed(3);
    auto check = [&](int64_t rows, int64_t q_len, int64_t d_len) {
      auto q = random_ids(rows, q_len, q_len - 1), d = random_ids(rows, d_len, d_len - 3);
      auto run = [&](const Model& m) {
        return engine::answer_logits(m, engine::encode_questions(m, q, k), q, engine::encode_documents(m, d, k), d, k).cpu();
      };
      auto a = run(*graphed), b = run(*eager);
      ASSERT_EQ(a.sizes(), b.sizes());
      EXPECT_LT(max_abs_diff(a, b), tolerance) << to_string(dtype) << " rows " << rows << " q " << q_len << " d " << d_len;
      auto ids = at::cat({q, d}, 1), types = at::cat({at::zeros_like(q), at::ones_like(d)}, 1);
      auto mask = ids.ne(0).to(at::kLong);
      EXPECT_LT(max_abs_diff(engine::full_logits(*graphed, ids, types, mask).cpu(), engine::full_logits(*eager, ids, types, mask).cpu()),
                tolerance);
    };
    for (int repeat = 0; repeat < 2; ++repeat)  // the second pass replays with new values
      for (auto [rows, q_len, d_len] : {std::tuple{1, 9, 200}, {3, 27, 293}, {4, 12, 180}, {16, 27, 64}}) check(rows, q_len, d_len);
    EXPECT_GT(graphed->impl().graphs->size(), 0u);
    const size_t captured = graphed->impl().graphs->size();
    check(1, 10, 199);  // pads to the graphs of (1, 9, 200): nothing new is captured
    EXPECT_EQ(graphed->impl().graphs->size(), captured);
    // The graphs' static inputs share buffers: they hold at most the doubled largest input of each kind, not one
    // buffer per graph (the replays above, alternating graphs, show the sharing keeps results apart).
    const auto held = graphed->impl().graphs->held();
    EXPECT_GT(held.input_bytes, 0);
    EXPECT_LT(held.input_bytes, held.unshared_input_bytes);

    std::vector<std::thread> threads;
    std::vector<double> diffs(4, 1e9);
    auto q = random_ids(4, 20, 15), d = random_ids(4, 250, 240);
    auto reference = engine::answer_logits(*eager, engine::encode_questions(*eager, q, k), q,
                                           engine::encode_documents(*eager, d, k), d, k).cpu();
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 20; ++i) {
          auto rows = q.slice(0, t, t + 1), drows = d.slice(0, t, t + 1);
          auto out = engine::answer_logits(*graphed, engine::encode_questions(*graphed, rows, k), rows,
                                           engine::encode_documents(*graphed, drows, k), drows, k).cpu();
          diffs[t] = std::max(i ? diffs[t] : 0.0, max_abs_diff(out, reference.slice(0, t, t + 1)));
        }
      });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_LT(diffs[t], tolerance) << "thread " << t;
  }
}

}  // namespace
}  // namespace deformer

namespace deformer {
namespace {

// Debian's LibTorch takes BLAS from the libblas.so.3 alternative. The reference BLAS is ~60x slower, and the
// pthread OpenBLAS fights LibTorch's OpenMP threads (docs/design.md, 'CPU and GPU'); scripts/common.sh installs
// and selects the OpenMP build. LibTorch builds that carry their own BLAS (pip wheels: MKL) map no libblas and are
// skipped.
TEST(Blas, OptimisedOpenMpBlasIsActive) {
  auto a = torch::rand({64, 64});
  (void)torch::mm(a, a);
  std::ifstream maps("/proc/self/maps");
  std::string line, blas;
  while (std::getline(maps, line))
    if (line.find("libblas.so") != std::string::npos || line.find("libopenblas") != std::string::npos) {
      blas = line.substr(line.find('/'));
      if (line.find("libblas.so") != std::string::npos) break;
    }
  if (blas.empty()) GTEST_SKIP() << "skipped: this LibTorch maps no system BLAS";
  const std::string resolved = std::filesystem::canonical(blas).string();
  std::cout << "BLAS: " << resolved << std::endl;
  EXPECT_EQ(resolved.find("/blas/"), std::string::npos) << "reference BLAS active: apt-get install libopenblas0-openmp";
  EXPECT_EQ(resolved.find("pthread"), std::string::npos) << "pthread OpenBLAS active; select openblas-openmp with update-alternatives";
}

}  // namespace
}  // namespace deformer

namespace deformer {
namespace {

TEST(EngineIds, OutOfVocabularyIdsAreNamed) {
  auto path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  auto model = Model::load(path);
  auto ids = torch::full({1, model->config().question_block}, int64_t(model->config().vocab_size), torch::kLong);
  try {
    engine::encode_questions(*model, ids, 1);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
  ids.fill_(-1);
  EXPECT_THROW(engine::encode_questions(*model, ids, 1), std::invalid_argument);
}

}  // namespace
}  // namespace deformer
