#include "deformer/layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace deformer {
namespace {

Block padded(std::vector<int64_t> ids, std::vector<int64_t> types, int length, int64_t pad = 0) {
  Block b;
  const size_t real = ids.size();
  b.input_ids = std::move(ids);
  b.token_type_ids = std::move(types);
  b.input_ids.resize(length, pad);
  b.token_type_ids.resize(length, b.token_type_ids.empty() ? 0 : b.token_type_ids.back());
  b.attention_mask.assign(length, 0);
  std::fill(b.attention_mask.begin(), b.attention_mask.begin() + real, 1);
  b.position_ids.resize(length);
  for (int i = 0; i < length; ++i) b.position_ids[i] = i;
  return b;
}

// XLNet's segment ids (HF XLNetTokenizer): first sequence 0, second 1, <cls> 2, padding 3.
constexpr int64_t kXLNetClsSegment = 2, kXLNetPadSegment = 3;

void require_xlnet_specials(const SpecialTokens& special) {
  if (special.pad < 0 || special.sep < 0 || special.cls < 0)
    throw std::invalid_argument("the XLNet layout needs <pad>, <sep> and <cls> ids");
}

}  // namespace

Block question_block(const std::vector<int64_t>& question_ids, int length, const SpecialTokens& special,
                     Convention convention) {
  if (length < 2) throw std::invalid_argument("question block must hold at least [CLS] and [SEP]");
  const size_t keep = std::min<size_t>(question_ids.size(), length - 2);
  if (convention == Convention::kXLNet) {
    require_xlnet_specials(special);
    std::vector<int64_t> ids(question_ids.begin(), question_ids.begin() + keep);
    ids.push_back(special.sep);
    ids.push_back(special.cls);
    Block b = padded(std::move(ids), std::vector<int64_t>(keep + 2, 1), length, special.pad);
    b.truncated = keep < question_ids.size();
    b.cls_position = static_cast<int>(keep + 1);
    return b;
  }
  std::vector<int64_t> ids;
  ids.reserve(length);
  ids.push_back(special.cls);
  ids.insert(ids.end(), question_ids.begin(), question_ids.begin() + keep);
  ids.push_back(special.sep);
  Block b = padded(std::move(ids), std::vector<int64_t>(keep + 2, 0), length);
  b.truncated = keep < question_ids.size();
  b.cls_position = 0;
  return b;
}

Block document_block(const std::vector<int64_t>& window_ids, int length, const SpecialTokens& special,
                     Convention convention) {
  if (window_ids.size() + 1 > static_cast<size_t>(length))
    throw std::invalid_argument("window of " + std::to_string(window_ids.size()) + " tokens does not fit a document block of " +
                                std::to_string(length) + " (at most " + std::to_string(length - 1) + ")");
  std::vector<int64_t> ids(window_ids);
  ids.push_back(special.sep);
  const size_t real = ids.size();
  if (convention == Convention::kXLNet) require_xlnet_specials(special);
  Block b = convention == Convention::kXLNet ? padded(std::move(ids), std::vector<int64_t>(real, 0), length, special.pad)
                                             : padded(std::move(ids), std::vector<int64_t>(real, 1), length);
  b.context_begin = 0;
  return b;
}

Block full_block(const std::vector<int64_t>& question_ids, const std::vector<int64_t>& window_ids, int length,
                 int max_question_len, const SpecialTokens& special, Convention convention) {
  const size_t q = std::min<size_t>(question_ids.size(), max_question_len);
  const size_t total = q + window_ids.size() + 3;
  if (total > static_cast<size_t>(length))
    throw std::invalid_argument("question and window need " + std::to_string(total) + " positions, more than " +
                                std::to_string(length));
  if (convention == Convention::kXLNet) {
    require_xlnet_specials(special);
    const size_t pad = length - total;
    Block b;
    b.input_ids.assign(pad, special.pad);
    b.token_type_ids.assign(pad, kXLNetPadSegment);
    b.input_ids.insert(b.input_ids.end(), window_ids.begin(), window_ids.end());
    b.input_ids.push_back(special.sep);
    b.token_type_ids.resize(b.input_ids.size(), 0);
    b.input_ids.insert(b.input_ids.end(), question_ids.begin(), question_ids.begin() + q);
    b.input_ids.push_back(special.sep);
    b.token_type_ids.resize(b.input_ids.size(), 1);
    b.input_ids.push_back(special.cls);
    b.token_type_ids.push_back(kXLNetClsSegment);
    b.attention_mask.assign(length, 1);
    std::fill(b.attention_mask.begin(), b.attention_mask.begin() + pad, 0);
    b.position_ids.resize(length);
    for (int i = 0; i < length; ++i) b.position_ids[i] = i;
    b.truncated = q < question_ids.size();
    b.context_begin = static_cast<int>(pad);
    b.cls_position = length - 1;
    return b;
  }
  std::vector<int64_t> ids, types;
  ids.reserve(length);
  ids.push_back(special.cls);
  ids.insert(ids.end(), question_ids.begin(), question_ids.begin() + q);
  ids.push_back(special.sep);
  types.assign(ids.size(), 0);
  ids.insert(ids.end(), window_ids.begin(), window_ids.end());
  ids.push_back(special.sep);
  types.resize(ids.size(), 1);
  Block b = padded(std::move(ids), std::move(types), length);
  std::fill(b.token_type_ids.begin() + total, b.token_type_ids.end(), 0);  // HF pads token types with 0
  b.truncated = q < question_ids.size();
  b.context_begin = static_cast<int>(q + 2);
  b.cls_position = 0;
  return b;
}

Convention convention_of(const ModelConfig& config) {
  return config.model_type == "xlnet" ? Convention::kXLNet : Convention::kBert;
}

std::vector<TokenSpan> document_windows(int64_t num_tokens, int window, int stride) {
  if (window <= 0) throw std::invalid_argument("window must be positive, got " + std::to_string(window));
  if (stride <= 0 || stride >= window)
    throw std::invalid_argument("stride " + std::to_string(stride) + " must be positive and smaller than the window of " +
                                std::to_string(window) + " tokens");
  std::vector<TokenSpan> spans;
  for (int64_t begin = 0; begin < num_tokens; begin += stride) {
    const int64_t end = std::min<int64_t>(begin + window, num_tokens);
    spans.push_back({begin, end});
    if (end == num_tokens) break;
  }
  return spans;
}

std::vector<std::vector<size_t>> plan_batches(const std::vector<std::array<int64_t, 2>>& lengths, int64_t max_rows,
                                              int64_t call_cost) {
  if (max_rows < 1) throw std::invalid_argument("max_rows must be at least 1, got " + std::to_string(max_rows));
  if (call_cost < 0) throw std::invalid_argument("call_cost must not be negative, got " + std::to_string(call_cost));
  const size_t n = lengths.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    if (lengths[i][0] < 0 || lengths[i][1] < 0) throw std::invalid_argument("row " + std::to_string(i) + " has a negative length");
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return lengths[a][0] + lengths[a][1] < lengths[b][0] + lengths[b][1];
  });
  // best[j]: the least cost of the first j sorted rows; cut[j]: where their last batch begins.
  std::vector<int64_t> best(n + 1, 0);
  std::vector<size_t> cut(n + 1, 0);
  for (size_t j = 1; j <= n; ++j) {
    int64_t longest0 = 0, longest1 = 0;
    best[j] = -1;
    for (size_t i = j; i > 0 && j - i < static_cast<size_t>(max_rows); --i) {
      longest0 = std::max(longest0, lengths[order[i - 1]][0]);
      longest1 = std::max(longest1, lengths[order[i - 1]][1]);
      const int64_t cost = best[i - 1] + call_cost + static_cast<int64_t>(j - i + 1) * (longest0 + longest1);
      if (best[j] < 0 || cost <= best[j]) {  // on a tie, the longer batch: fewer passes
        best[j] = cost;
        cut[j] = i - 1;
      }
    }
  }
  std::vector<std::vector<size_t>> batches;
  for (size_t j = n; j > 0; j = cut[j]) batches.emplace_back(order.begin() + cut[j], order.begin() + j);
  std::reverse(batches.begin(), batches.end());
  return batches;
}

}  // namespace deformer
