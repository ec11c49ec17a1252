#include "deformer/layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace deformer {
namespace {

Block padded(std::vector<int64_t> ids, std::vector<int64_t> types, int length) {
  Block b;
  const size_t real = ids.size();
  b.input_ids = std::move(ids);
  b.token_type_ids = std::move(types);
  b.input_ids.resize(length, 0);
  b.token_type_ids.resize(length, b.token_type_ids.empty() ? 0 : b.token_type_ids.back());
  b.attention_mask.assign(length, 0);
  std::fill(b.attention_mask.begin(), b.attention_mask.begin() + real, 1);
  b.position_ids.resize(length);
  for (int i = 0; i < length; ++i) b.position_ids[i] = i;
  return b;
}

}  // namespace

Block question_block(const std::vector<int64_t>& question_ids, int length, const SpecialTokens& special) {
  if (length < 2) throw std::invalid_argument("question block must hold at least [CLS] and [SEP]");
  const size_t keep = std::min<size_t>(question_ids.size(), length - 2);
  std::vector<int64_t> ids;
  ids.reserve(length);
  ids.push_back(special.cls);
  ids.insert(ids.end(), question_ids.begin(), question_ids.begin() + keep);
  ids.push_back(special.sep);
  Block b = padded(std::move(ids), std::vector<int64_t>(keep + 2, 0), length);
  b.truncated = keep < question_ids.size();
  return b;
}

Block document_block(const std::vector<int64_t>& window_ids, int length, const SpecialTokens& special) {
  if (window_ids.size() + 1 > static_cast<size_t>(length))
    throw std::invalid_argument("window of " + std::to_string(window_ids.size()) + " tokens does not fit a document block of " +
                                std::to_string(length) + " (at most " + std::to_string(length - 1) + ")");
  std::vector<int64_t> ids(window_ids);
  ids.push_back(special.sep);
  const size_t real = ids.size();
  return padded(std::move(ids), std::vector<int64_t>(real, 1), length);
}

Block full_block(const std::vector<int64_t>& question_ids, const std::vector<int64_t>& window_ids, int length,
                 int max_question_len, const SpecialTokens& special) {
  const size_t q = std::min<size_t>(question_ids.size(), max_question_len);
  const size_t total = q + window_ids.size() + 3;
  if (total > static_cast<size_t>(length))
    throw std::invalid_argument("question and window need " + std::to_string(total) + " positions, more than " +
                                std::to_string(length));
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
  return b;
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

}  // namespace deformer
