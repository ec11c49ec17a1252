#pragma once
// Private: what the cache's checksums cover (the layout in deformer/cache.h: /windows/checksum, /documents/checksum,
// "tables_checksum"), shared by the writer that stores them and the reader that checks them.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "checksum.h"

namespace deformer {
namespace cache {
namespace detail {

// A window's stored rows, then its int8 scales.
inline uint64_t window_checksum(const uint8_t* values, size_t value_bytes, const float* scales, size_t num_scales) {
  const uint64_t sum = deformer::detail::checksum(values, value_bytes);
  return num_scales ? deformer::detail::checksum(scales, num_scales * sizeof(float), sum) : sum;
}

// The tables a reader reads whole at open, each digested in file order, then the seven digests together.
class TableDigests {
 public:
  void add(const std::string& id, const int64_t* id_span, const int64_t* text_span, const int64_t* token_span,
           const int64_t* window_span, const std::vector<int64_t>& window_tokens,
           const std::vector<int64_t>& window_rows) {
    digests_[0].update(id.data(), id.size());
    digests_[1].update(id_span, 16);
    digests_[2].update(text_span, 16);
    digests_[3].update(token_span, 16);
    digests_[4].update(window_span, 16);
    digests_[5].update(window_tokens.data(), window_tokens.size() * 8);
    digests_[6].update(window_rows.data(), window_rows.size() * 8);
  }
  uint64_t value() const { return combine({digests_[0].value(), digests_[1].value(), digests_[2].value(),
                                           digests_[3].value(), digests_[4].value(), digests_[5].value(),
                                           digests_[6].value()}); }
  static uint64_t combine(const std::array<uint64_t, 7>& digests) {
    return deformer::detail::checksum(digests.data(), sizeof(digests));
  }

 private:
  deformer::detail::Digest digests_[7];
};

}  // namespace detail
}  // namespace cache
}  // namespace deformer
