// Invariant 4 (docs/design.md, 'Invariants') with the engine: answers from cached states, in every storage dtype,
// equal the in-memory deformer forward.
#include "deformer/cache.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <torch/script.h>

#include <cmath>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "cache_fixture.h"
#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/model.h"
#include "deformer/tokenizer.h"
#include "test_data.h"

namespace deformer {
namespace {

namespace fs = std::filesystem;
using namespace cache;
using namespace cache_testing;
using namespace deformer::testing;

TEST_F(CacheTest, EngineRoundTripMatchesInMemoryForward) {
  const std::string model_path = testing::fixture("tiny-own-vocab.pt");
  DEFORMER_REQUIRE_FILE(model_path);
  auto model = Model::load(model_path);
  const auto& c = model->config();
  const int k = 2;
  const SpecialTokens special = make_tokenizer(*model)->special_tokens();
  CacheMetadata m;
  m.model_hash = model->content_hash();
  m.model_type = c.model_type;
  m.k = k;
  m.hidden_size = c.hidden_size;
  m.question_block = c.question_block;
  m.document_block = c.document_block;
  m.window_stride = c.window_stride;
  m.tokenizer_hash = "fixture-vocab";

  // Two documents of 500 and 120 tokens: several overlapping windows, one short last window.
  std::vector<std::vector<int64_t>> doc_tokens;
  for (int length : {500, 120}) {
    std::vector<int64_t> ids;
    for (int i = 0; i < length; ++i) ids.push_back(5 + (length * 7 + i * 37) % (c.vocab_size - 5));
    doc_tokens.push_back(ids);
  }
  std::vector<at::Tensor> ids_rows, states_rows;
  std::vector<std::vector<TokenSpan>> spans;
  for (const auto& tokens : doc_tokens) {
    spans.push_back(document_windows(tokens.size(), c.document_block - 1, c.window_stride));
    for (const auto& s : spans.back()) {
      std::vector<int64_t> window(tokens.begin() + s.begin, tokens.begin() + s.end);
      ids_rows.push_back(torch::tensor(document_block(window, c.document_block, special).input_ids, torch::kLong));
    }
  }
  const auto doc_ids = torch::stack(ids_rows);
  const auto states = engine::encode_documents(*model, doc_ids, k).to(at::kFloat).contiguous();
  const int64_t num_windows = doc_ids.size(0), block = c.document_block, hidden = c.hidden_size;

  std::vector<int64_t> question(9);
  for (int i = 0; i < 9; ++i) question[i] = 5 + i * 11;
  const auto q = torch::tensor(question_block(question, c.question_block, special).input_ids, torch::kLong).unsqueeze(0);
  const auto q_states = engine::encode_questions(*model, q, k).expand({num_windows, -1, -1});
  const auto q_ids = q.expand({num_windows, -1});
  const auto expected = engine::answer_logits(*model, q_states, q_ids, states, doc_ids, k);
  const auto real = doc_ids.ne(0);  // real document positions; padding logits are never read

  std::map<StateDType, double> tolerance{{StateDType::kFloat32, 0.0},
                                         {StateDType::kFloat16, 1e-3},
                                         {StateDType::kBFloat16, 1e-2},
                                         {StateDType::kInt8, 3e-2}};
  for (const auto& [dtype, tol] : tolerance) {
    m.state_dtype = dtype;
    const std::string file = path(std::string("engine-") + to_string(dtype) + ".h5");
    {
      auto writer = CacheWriter::create(file, m);
      int64_t row = 0;
      for (size_t d = 0; d < doc_tokens.size(); ++d) {
        std::vector<CharSpan> offsets;
        std::string text;
        for (size_t t = 0; t < doc_tokens[d].size(); ++t) {
          offsets.push_back({static_cast<int64_t>(2 * t), static_cast<int64_t>(2 * t + 1)});
          text += "x ";
        }
        std::vector<WindowStates> windows;
        for (const auto& s : spans[d]) {
          windows.push_back({s, s.end - s.begin + 1, states[row].data_ptr<float>()});
          ++row;
        }
        writer->add_document("d" + std::to_string(d), text, offsets, windows);
      }
      writer->commit();
    }
    if (dtype != StateDType::kFloat32) {
      // Does gzip pay on real layer-k states? Compare the states' stored bytes with a gzip 4 + shuffle copy.
      const std::string packed = file + ".gz.h5";
      {
        auto writer = CacheWriter::create(packed, m, {0, 4, true});
        int64_t row = 0;
        for (size_t d = 0; d < doc_tokens.size(); ++d) {
          std::vector<CharSpan> offsets(doc_tokens[d].size(), CharSpan{0, 1});
          std::vector<WindowStates> windows;
          for (const auto& s : spans[d]) windows.push_back({s, s.end - s.begin + 1, states[row++].data_ptr<float>()});
          writer->add_document("d" + std::to_string(d), "x", offsets, windows);
        }
        writer->commit();
      }
      auto stored = [](const std::string& f) {
        hid_t id = H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t ds = H5Dopen2(id, "/states/values", H5P_DEFAULT);
        const double bytes = static_cast<double>(H5Dget_storage_size(ds));
        H5Dclose(ds);
        H5Fclose(id);
        return bytes;
      };
      // Against the payload, not the raw dataset, whose last chunk is allocated whole.
      const double payload = real.sum().item<double>() * hidden * (dtype == StateDType::kInt8 ? 1 : 2);
      std::cout << "[ measured ] " << to_string(dtype) << " engine states, gzip4+shuffle / raw payload bytes: "
                << stored(packed) / payload << " (raw dataset " << stored(file) / payload << ")\n";
    }
    auto reader = CacheReader::open(file, m);
    std::vector<int64_t> all(num_windows);
    std::iota(all.begin(), all.end(), 0);
    std::vector<float> buffer(num_windows * reader->window_floats());
    reader->read_windows(all, buffer.data());
    const auto loaded = torch::from_blob(buffer.data(), {num_windows, block, hidden}, torch::kFloat);
    const auto logits = engine::answer_logits(*model, q_states, q_ids, loaded, doc_ids, k);
    // Question positions and real document positions; padded document positions are masked out.
    const auto question_part = logits.slice(1, 0, c.question_block);
    const auto document_part = logits.slice(1, c.question_block).masked_select(real.unsqueeze(-1));
    const auto expected_question = expected.slice(1, 0, c.question_block);
    const auto expected_document = expected.slice(1, c.question_block).masked_select(real.unsqueeze(-1));
    const double diff = std::max((question_part - expected_question).abs().max().item<double>(),
                                 (document_part - expected_document).abs().max().item<double>());
    const double state_diff =
        (loaded - states.masked_fill(real.unsqueeze(-1).logical_not(), 0)).abs().max().item<double>();
    std::cout << "[ measured ] " << to_string(dtype) << ": max |state error| " << state_diff
              << ", max |logit error| " << diff << " (logit range " << expected.abs().max().item<double>()
              << ")\n";
    if (dtype == StateDType::kFloat32) {
      EXPECT_TRUE(at::equal(question_part, expected_question));
      EXPECT_TRUE(at::equal(document_part, expected_document)) << "fp32 must be bit-exact, diff " << diff;
    } else {
      EXPECT_LE(diff, tol) << to_string(dtype);
      EXPECT_GT(diff, 0.0) << to_string(dtype) << " storage is lossy, so the logits must move a little";
      // Best answer position per window is unchanged.
      EXPECT_TRUE(at::equal(document_part.view({-1, 2}).argmax(0), expected_document.view({-1, 2}).argmax(0)));
    }
  }
}

// The scalar codecs (the portable path) agree bit for bit with the F16C hardware, on every half and on
// floats drawn from every exponent, plus the rounding edges.

}  // namespace
}  // namespace deformer
