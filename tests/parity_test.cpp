// Parity of the C++ forward with a reference implementation, on cases a reference script wrote:
//   - tests/golden/eager_reference.py: the exporter's eager PyTorch module (full and deformer mode), run by CTest
//     before this test (fixture eager_parity);
//   - tests/hf/bert_hf_parity.py: Hugging Face BertForQuestionAnswering (GPU machine), full mode;
//   - tests/golden/xlnet_eager_reference.py: the eager XLNetQA (full and deformer mode);
//   - tests/hf/xlnet_hf_parity.py: Hugging Face XLNetForQuestionAnsweringSimple (GPU machine), full mode.
// The layout convention (BERT or XLNet order, padding side, segments) follows the model's type.
// DEFORMER_PARITY_CASES (colon-separated JSON files) overrides the default eager cases; DEFORMER_TEST_DEVICE=cuda
// runs the C++ side on the GPU.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/model.h"
#include "test_data.h"

namespace deformer {
namespace {

constexpr double kTolerance = 1e-4;

std::vector<std::string> case_files() {
  const char* env = std::getenv("DEFORMER_PARITY_CASES");
  std::vector<std::string> files;
  std::stringstream list(env && *env ? env : testing::fixture("eager-parity.json"));
  for (std::string item; std::getline(list, item, ':');)
    if (!item.empty()) files.push_back(item);
  return files;
}

LoadOptions test_options() {
  LoadOptions options;
  const char* device = std::getenv("DEFORMER_TEST_DEVICE");
  if (device && *device) options.device = parse_device(device);
  return options;
}

at::Tensor row(const std::vector<int64_t>& v, const c10::Device& device) {
  return torch::tensor(v, torch::kLong).unsqueeze(0).to(device);
}

// Max |C++ - reference| over the positions where mask is 1.
double max_diff(const at::Tensor& logits, const nlohmann::json& start, const nlohmann::json& end,
                const std::vector<int64_t>& mask) {
  auto cpu = logits.to(at::kCPU).to(at::kFloat);
  auto a = cpu.accessor<float, 3>();
  double worst = 0;
  for (size_t i = 0; i < start.size() && i < mask.size(); ++i) {
    if (!mask[i]) continue;
    worst = std::max({worst, std::abs(a[0][i][0] - start[i].get<double>()), std::abs(a[0][i][1] - end[i].get<double>())});
  }
  return worst;
}

TEST(Parity, CppForwardEqualsReference) {
  const auto files = case_files();
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    DEFORMER_REQUIRE_FILE(file);
    nlohmann::json spec = nlohmann::json::parse(std::ifstream(file));
    const std::string model_path = spec.at("model");
    auto model = Model::load(model_path, test_options());
    const c10::Device device = model->options().device == Device::kCUDA ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
    SpecialTokens special;
    special.pad = spec.value("pad", 0);
    special.cls = spec.at("cls");
    special.sep = spec.at("sep");
    const auto& c = model->config();
    const Convention convention = convention_of(c);
    double worst_full = 0, worst_deformer = 0;
    bool padding_segments_reported = false;
    int full_cases = 0, deformer_cases = 0;
    for (const auto& item : spec.at("cases")) {
      const auto q = item.at("question_ids").get<std::vector<int64_t>>();
      const auto w = item.at("window_ids").get<std::vector<int64_t>>();
      const std::string name = file + " case " + item.value("key", nlohmann::json()).dump();
      if (item.contains("full")) {
        auto block = full_block(q, w, spec.value("max_seq_len", c.max_seq_len), spec.value("max_question_len", c.max_question_len),
                                special, convention);
        if (item.contains("input_ids")) {
          auto ids = item["input_ids"].get<std::vector<int64_t>>();
          ASSERT_TRUE(std::equal(ids.begin(), ids.end(), block.input_ids.begin())) << "layout differs from the reference: " << name;
          // Segments must agree at real positions. Padding is masked as keys, so its segment changes nothing
          // real (transformers 5 pads XLNet's segments with 0, 4.x with 3): a difference there is only reported.
          auto types = item["token_type_ids"].get<std::vector<int64_t>>();
          ASSERT_LE(types.size(), block.token_type_ids.size()) << name;  // a reference may leave out right padding
          for (size_t i = 0; i < types.size(); ++i) {
            if (block.attention_mask[i]) {
              ASSERT_EQ(types[i], block.token_type_ids[i]) << "segment at position " << i << " differs: " << name;
            } else if (types[i] != block.token_type_ids[i] && !padding_segments_reported) {
              std::cout << "note: padding segment ids differ (reference " << types[i] << ", ours " << block.token_type_ids[i]
                        << "); padding is masked" << std::endl;
              padding_segments_reported = true;
            }
          }
        }
        auto logits = engine::full_logits(*model, row(block.input_ids, device), row(block.token_type_ids, device),
                                          row(block.attention_mask, device));
        const double d = max_diff(logits, item["full"]["start"], item["full"]["end"], block.attention_mask);
        EXPECT_LE(d, kTolerance) << name;
        worst_full = std::max(worst_full, d);
        ++full_cases;
      }
      for (const auto& split : item.value("deformer", nlohmann::json::array())) {
        const int k = split.at("k");
        auto qb = question_block(q, c.question_block, special, convention);
        auto db = document_block(w, c.document_block, special, convention);
        auto q_ids = row(qb.input_ids, device), d_ids = row(db.input_ids, device);
        auto logits = engine::answer_logits(*model, engine::encode_questions(*model, q_ids, k), q_ids,
                                            engine::encode_documents(*model, d_ids, k), d_ids, k);
        // The joint row's order: [question ; document] for BERT, [document ; question] for XLNet.
        const bool document_first = convention == Convention::kXLNet;
        std::vector<int64_t> mask(document_first ? db.attention_mask : qb.attention_mask);
        const auto& second = document_first ? qb.attention_mask : db.attention_mask;
        mask.insert(mask.end(), second.begin(), second.end());
        const double d = max_diff(logits, split["start"], split["end"], mask);
        EXPECT_LE(d, kTolerance) << name << " k=" << k;
        worst_deformer = std::max(worst_deformer, d);
        ++deformer_cases;
      }
    }
    EXPECT_GT(full_cases + deformer_cases, 0) << file;
    std::cout << "parity " << file << " (" << spec.value("reference", "") << ", device " << to_string(model->options().device)
              << "): full " << full_cases << " cases max|d| " << worst_full << "; deformer " << deformer_cases
              << " cases max|d| " << worst_deformer << std::endl;
  }
}

}  // namespace
}  // namespace deformer
