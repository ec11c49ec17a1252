#include "text/unicode.h"

#include <algorithm>
#include <iterator>

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

struct CodePointRange {
  char32_t first, last;
};

// Code points from `first` up to the next run's `first` have class `cls` (a GraphemeBreak; kLV stands for both
// kinds of Hangul syllable).
struct GraphemeRun {
  char32_t first;
  uint8_t cls;
};

}  // namespace

#include "text/unicode_tables.inc"
#include "text/nfkd_table.inc"
#include "text/grapheme_table.inc"


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

bool is_mark(char32_t cp) {
  if (flags(cp) & kMn) return true;
  const auto* end = std::end(kSpacingEnclosingMarks);
  const auto* it = std::upper_bound(std::begin(kSpacingEnclosingMarks), end, cp,
                                    [](char32_t c, const CodePointRange& r) { return c < r.first; });
  return it != std::begin(kSpacingEnclosingMarks) && cp <= (it - 1)->last;
}

GraphemeBreak grapheme_break(char32_t cp) {
  const auto* it = std::upper_bound(std::begin(kGraphemeRuns), std::end(kGraphemeRuns), cp,
                                    [](char32_t c, const GraphemeRun& r) { return c < r.first; });
  const auto cls = static_cast<GraphemeBreak>((it - 1)->cls);
  if (cls != GraphemeBreak::kLV) return cls;
  // Hangul syllables alternate: one LV (no final consonant), then 27 LVT.
  return (cp - kHangulFirst) % 28 == 0 ? GraphemeBreak::kLV : GraphemeBreak::kLVT;
}

size_t grapheme_cluster_end(std::u32string_view text, size_t begin) {
  using G = GraphemeBreak;
  G prev = grapheme_break(text[begin]);
  bool pictographic = prev == G::kExtPict;  // ExtPict Extend* ends at prev (GB11)
  bool pictographic_zwj = false;            // ... followed by the ZWJ that prev is
  int regional = prev == G::kRegionalIndicator;  // regional indicators in a row ending at prev (GB12, GB13)
  size_t end = begin + 1;
  for (; end < text.size(); ++end) {
    const G next = grapheme_break(text[end]);
    const auto control = [](G g) { return g == G::kControl || g == G::kCR || g == G::kLF; };
    bool joins;
    if (prev == G::kCR && next == G::kLF) {
      joins = true;  // GB3
    } else if (control(prev) || control(next)) {
      joins = false;  // GB4, GB5
    } else {
      joins = (prev == G::kL && (next == G::kL || next == G::kV || next == G::kLV || next == G::kLVT)) ||  // GB6
              ((prev == G::kLV || prev == G::kV) && (next == G::kV || next == G::kT)) ||                 // GB7
              ((prev == G::kLVT || prev == G::kT) && next == G::kT) ||                                   // GB8
              next == G::kExtend || next == G::kZWJ || next == G::kSpacingMark ||                        // GB9, GB9a
              prev == G::kPrepend ||                                                                     // GB9b
              (pictographic_zwj && next == G::kExtPict) ||                                               // GB11
              (regional % 2 == 1 && next == G::kRegionalIndicator);                                      // GB12, GB13
    }
    if (!joins) break;
    pictographic_zwj = pictographic && next == G::kZWJ;
    pictographic = next == G::kExtPict || (pictographic && next == G::kExtend);
    regional = next == G::kRegionalIndicator ? regional + 1 : 0;
    prev = next;
  }
  return end;
}

}  // namespace deformer::unicode
