#pragma once
// Unicode properties for the BERT normalizer, from generated tables (gen_unicode_tables.py explains why
// they are generated and which Unicode versions they follow).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace deformer::unicode {

enum Flag : uint8_t {
  kOther = 1 << 0,   // Cc, Cf, Co (HF's is_other; \t \n \r are handled by the caller)
  kMn = 1 << 1,      // nonspacing mark
  kPunct = 1 << 2,   // Unicode P* or ASCII punctuation (BERT's split characters)
  kSpace = 1 << 3,   // White_Space
  kCjk = 1 << 4,     // CJK ideograph blocks BERT isolates
  kLower = 1 << 5,   // has a lowercase mapping different from itself
  kDecomp = 1 << 6,  // has a canonical decomposition (Hangul syllables excluded: algorithmic)
  kCcc = 1 << 7,     // nonzero canonical combining class
};

extern const uint16_t kBlockIndex[];
extern const uint8_t kBlocks[];

inline uint8_t flags(char32_t cp) { return kBlocks[(static_cast<size_t>(kBlockIndex[cp >> 8]) << 8) | (cp & 0xFF)]; }

// Writes the mapping of `cp` (at most 3 code points for lowercase, 4 for NFD) to `out`, returns its length.
// Only valid when the corresponding flag is set.
int lowercase(char32_t cp, char32_t* out);
int decompose(char32_t cp, char32_t* out);
uint8_t combining_class(char32_t cp);

// Full NFKD of `cp` (canonical and compatibility decompositions applied recursively, Hangul included) into
// `out`, which must hold kMaxDecomposition code points; returns its length (1 and `cp` itself when it has none).
// Combining marks come out in the order of the mapping; canonical reordering is the caller's.
constexpr int kMaxDecomposition = 18;
int decompose_compatibility(char32_t cp, char32_t* out);

constexpr char32_t kHangulFirst = 0xAC00, kHangulLast = 0xD7A3;
// Hangul syllable to its 2 or 3 jamo (Unicode 3.12).
int decompose_hangul(char32_t cp, char32_t* out);

// General_Category M (Mn, Mc, Me) among characters present in Unicode 9.0: what tokenizers' StripAccents drops
// (its is_combining_mark), where BERT's accent stripping drops only kMn.
bool is_mark(char32_t cp);

// Grapheme_Cluster_Break (UAX #29, Unicode 14.0.0), with Extended_Pictographic characters (otherwise Other) as
// kExtPict; gen_grapheme_table.py's CLASSES lists them in this order.
enum class GraphemeBreak : uint8_t {
  kOther, kCR, kLF, kControl, kExtend, kZWJ, kRegionalIndicator, kPrepend, kSpacingMark, kL, kV, kT, kLV, kLVT,
  kExtPict,
};
GraphemeBreak grapheme_break(char32_t cp);

// End of the extended grapheme cluster (UAX #29 rules GB3-GB13) that starts at text[begin], begin < text.size().
size_t grapheme_cluster_end(std::u32string_view text, size_t begin);

}  // namespace deformer::unicode
