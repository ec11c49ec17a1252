#include "tokenizer/unicode.h"

#include <algorithm>

namespace deformer::unicode {
namespace {

struct Mapping {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};

struct CombiningClass {
  char32_t cp;
  uint8_t ccc;
};

}  // namespace

#include "tokenizer/unicode_tables.inc"
#include "tokenizer/nfkd_table.inc"


namespace {

template <size_t N>
const Mapping* find(const Mapping (&table)[N], char32_t cp) {
  const Mapping* it = std::lower_bound(table, table + N, cp, [](const Mapping& m, char32_t c) { return m.cp < c; });
  return it != table + N && it->cp == cp ? it : nullptr;
}

template <size_t N, size_t P>
int copy(const Mapping (&table)[N], const char32_t (&pool)[P], char32_t cp, char32_t* out) {
  const Mapping* m = find(table, cp);
  if (!m) {
    out[0] = cp;
    return 1;
  }
  std::copy(pool + m->offset, pool + m->offset + m->length, out);
  return m->length;
}

}  // namespace

int lowercase(char32_t cp, char32_t* out) { return copy(kLowerMap, kLowerMapPool, cp, out); }
int decompose(char32_t cp, char32_t* out) { return copy(kDecompMap, kDecompMapPool, cp, out); }

uint8_t combining_class(char32_t cp) {
  const auto* end = kCombining + sizeof(kCombining) / sizeof(kCombining[0]);
  const auto* it = std::lower_bound(kCombining, end, cp, [](const CombiningClass& c, char32_t v) { return c.cp < v; });
  return it != end && it->cp == cp ? it->ccc : 0;
}

int decompose_compatibility(char32_t cp, char32_t* out) {
  if (cp >= kHangulFirst && cp <= kHangulLast) return decompose_hangul(cp, out);
  return copy(kCompatMap, kCompatMapPool, cp, out);
}

int decompose_hangul(char32_t cp, char32_t* out) {
  constexpr char32_t kL = 0x1100, kV = 0x1161, kT = 0x11A7;
  constexpr int kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
  const int s = static_cast<int>(cp - kHangulFirst);
  out[0] = kL + s / kNCount;
  out[1] = kV + (s % kNCount) / kTCount;
  const int t = s % kTCount;
  if (t == 0) return 2;
  out[2] = kT + t;
  return 3;
}

}  // namespace deformer::unicode
