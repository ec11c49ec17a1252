// XLNet's tokenizer as transformers 5 builds it from spiece.model (XLNetTokenizer on the `tokenizers` backend: the
// pieces and scores, the control and user-defined pieces and the normalizer's charsmap read from the model proto):
//
//   1. Added tokens are cut out of the raw text first: the unknown piece, the control pieces (<cls>, <sep>, ...) and
//      the user-defined pieces (in xlnet-base-cased: <eop> . ( ) " - – £ €), longest match leftmost; <mask> also takes
//      the whitespace before it (lstrip).
//   2. Each stretch between them is normalized: `` and '' to ", NFKD, StripAccents (every mark), then the model's
//      precompiled charsmap (HF's Precompiled, one grapheme cluster at a time).
//   3. Pre-tokenized: split on whitespace (WhitespaceSplit), "\u2581" put before each word and the word split before
//      every "\u2581" (Metaspace, prepend_scheme "always").
//   4. Each part encoded by the Unigram model: Viterbi over all pieces with their scores, unknown characters
//      scored min_score - 10 and runs of them fused into one <unk>.
//
// libsentencepiece's own encoder is not used: it cannot reproduce these choices. It matches user-defined pieces
// inside the normalized text instead of splitting the raw text at them, so the word right after "(" or "-" does not
// start with "\u2581" (most of the differences to HF: 2,426 of 2,436 SQuAD and hard-string texts); it applies the
// charsmap by longest match, not per grapheme cluster; and Debian's libsentencepiece 0.1.97 exposes neither piece
// types nor the charsmap. So the proto is read here (a few fields of its wire format) and the steps above are HF's,
// alignment quirks included: offsets are HF's offset_mapping, code points of the original text.

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "deformer/tokenizer.h"
#include "tokenizer/piece_vocabulary.h"
#include "text/unicode.h"
#include "text/utf8.h"

namespace deformer {
namespace {

constexpr char32_t kMetaspace = 0x2581;  // "\u2581", SentencePiece's word-start marker

// ---------------------------------------------------------------------------------------------------------------
// The model proto (sentencepiece_model.proto): only the fields HF's converter reads.

enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4 };

struct Piece {
  std::string text;
  float score = 0;
  int type = kNormal;
};

struct ModelProto {
  std::vector<Piece> pieces;  // ModelProto.pieces = 1
  int64_t unk_id = 0;         // TrainerSpec.unk_id = 40 (ModelProto.trainer_spec = 2)
  std::string charsmap;       // NormalizerSpec.precompiled_charsmap = 2 (ModelProto.normalizer_spec = 3)
};

[[noreturn]] void not_a_model(const std::string& why) {
  throw std::invalid_argument("not a SentencePiece model: " + why);
}

// Protobuf wire format, the subset a SentencePiece model uses (no groups).
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  // The next field's number and wire type; false at the end.
  bool next(uint64_t& field, int& wire) {
    if (pos_ == data_.size()) return false;
    const uint64_t key = varint();
    field = key >> 3;
    wire = static_cast<int>(key & 7);
    return true;
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == data_.size()) fail("truncated varint");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= uint64_t(byte & 0x7F) << shift;
      if (byte < 0x80) return value;
    }
    fail("varint longer than 10 bytes");
  }
  std::string_view bytes() {
    const uint64_t size = varint();
    if (size > data_.size() - pos_) fail("length past the end");
    const std::string_view out = data_.substr(pos_, size);
    pos_ += size;
    return out;
  }
  float fixed32() {
    if (data_.size() - pos_ < 4) fail("truncated fixed32");
    uint32_t bits = 0;
    for (int k = 0; k < 4; ++k) bits |= uint32_t(static_cast<unsigned char>(data_[pos_ + k])) << (8 * k);
    pos_ += 4;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }
  void skip(int wire) {
    if (wire == 0) {
      varint();
    } else if (wire == 2) {
      bytes();
    } else if (wire == 1 || wire == 5) {
      const size_t size = wire == 1 ? 8 : 4;
      if (data_.size() - pos_ < size) fail("truncated fixed field");
      pos_ += size;
    } else {
      fail("wire type " + std::to_string(wire));
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    not_a_model("malformed protobuf (" + why + ") at byte " + std::to_string(pos_));
  }

  std::string_view data_;
  size_t pos_ = 0;
};

ModelProto parse_model(std::string_view proto) {
  ModelProto model;
  WireReader reader(proto);
  uint64_t field;
  int wire;
  while (reader.next(field, wire)) {
    if (field == 1 && wire == 2) {
      Piece piece;
      WireReader r(reader.bytes());
      while (r.next(field, wire)) {
        if (field == 1 && wire == 2) piece.text = std::string(r.bytes());
        else if (field == 2 && wire == 5) piece.score = r.fixed32();
        else if (field == 3 && wire == 0) piece.type = static_cast<int>(r.varint());
        else r.skip(wire);
      }
      model.pieces.push_back(std::move(piece));
    } else if ((field == 2 || field == 3) && wire == 2) {
      const uint64_t message = field;
      WireReader r(reader.bytes());
      while (r.next(field, wire)) {
        if (message == 2 && field == 40 && wire == 0) model.unk_id = static_cast<int32_t>(r.varint());
        else if (message == 3 && field == 2 && wire == 2) model.charsmap = std::string(r.bytes());
        else r.skip(wire);
      }
    } else {
      reader.skip(wire);
    }
  }
  if (model.pieces.empty()) not_a_model("no pieces");
  if (model.unk_id < 0 || model.unk_id >= static_cast<int64_t>(model.pieces.size()))
    not_a_model("unk_id " + std::to_string(model.unk_id) + " outside the " + std::to_string(model.pieces.size()) +
                " pieces");
  for (size_t id = 0; id < model.pieces.size(); ++id) {
    const std::string& text = model.pieces[id].text;
    if (text.empty()) not_a_model("piece " + std::to_string(id) + " is empty");
    try {
      for (size_t pos = 0; pos < text.size();) utf8::decode(text, pos);
    } catch (const std::invalid_argument& e) {
      not_a_model("piece " + std::to_string(id) + ": " + e.what());
    }
  }
  return model;
}

// ---------------------------------------------------------------------------------------------------------------
// Text being normalized, with HF's alignments.

// A code point of the normalized text and the span of original code points HF aligns it with.
struct Aligned {
  char32_t cp;
  int64_t begin, end;
};
using Normalized = std::vector<Aligned>;

// One character of HF's NormalizedString::transform and its `change`: 0 takes the place of the next old character,
// -n also removes the n old characters after that one, 1 is inserted and aligned with the old character before it.
struct Change {
  char32_t cp;
  int change;
};

// NormalizedString::transform over the whole text, as HF's Precompiled step calls it. Old characters that the changes
// do not account for are dropped from the end, so a removal that could not be folded into an earlier change shifts
// the alignment of what follows by one character: HF's behaviour, kept for its offsets. `origin` is where the text
// starts in the original (HF's alignment (0, 0) of its slice).
Normalized transform(const Normalized& old, const std::vector<Change>& changes, int64_t origin) {
  Normalized out;
  out.reserve(changes.size());
  size_t next = 0;  // the next old character
  for (const Change& c : changes) {
    if (c.change > 0) {
      const Aligned before = next > 0 ? old[next - 1] : Aligned{0, origin, origin};
      out.push_back({c.cp, before.begin, before.end});
    } else {
      if (next >= old.size()) throw std::logic_error("XLNet normalizer: transformation past the end of the text");
      out.push_back({c.cp, old[next].begin, old[next].end});
      next += 1 + static_cast<size_t>(-c.change);
    }
  }
  return out;
}

// HF's Replace normalizer with a literal pattern (matches leftmost first, not overlapping): the replacement is
// inserted after removing the match, so it is aligned with the match's last character.
void replace_literal(Normalized& text, std::u32string_view pattern, char32_t replacement) {
  Normalized out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    bool match = i + pattern.size() <= text.size();
    for (size_t k = 0; match && k < pattern.size(); ++k) match = text[i + k].cp == pattern[k];
    if (match) {
      const Aligned& last = text[i + pattern.size() - 1];
      out.push_back({replacement, last.begin, last.end});
      i += pattern.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  text = std::move(out);
}

// HF's NFKD then StripAccents: every character of a decomposition keeps the decomposed character's alignment, and
// marks are dropped. Canonical reordering is skipped: it only permutes combining marks, which are all dropped.
Normalized decompose_and_strip(const Normalized& text) {
  Normalized out;
  out.reserve(text.size());
  char32_t buffer[unicode::kMaxDecomposition];
  for (const Aligned& a : text) {
    const int n = unicode::decompose_compatibility(a.cp, buffer);
    for (int k = 0; k < n; ++k)
      if (!unicode::is_mark(buffer[k])) out.push_back({buffer[k], a.begin, a.end});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The precompiled charsmap: a darts-clone double-array trie of UTF-8 keys whose values index NUL-terminated
// replacements. Layout: uint32 trie size in bytes (little-endian), the trie's uint32 units, the replacements.
class Charsmap {
 public:
  explicit Charsmap(std::string_view blob) {
    if (blob.empty()) return;  // a model without one: HF adds no Precompiled step
    if (blob.size() < 4) not_a_model("precompiled charsmap of " + std::to_string(blob.size()) + " bytes");
    const uint32_t trie_size = read32(blob.data());
    if (trie_size % 4 != 0 || trie_size < 4 || trie_size > blob.size() - 4)
      not_a_model("precompiled charsmap with a trie of " + std::to_string(trie_size) + " bytes");
    for (size_t k = 0; k < trie_size; k += 4) units_.push_back(read32(blob.data() + 4 + k));
    replacements_ = std::string(blob.substr(4 + trie_size));
    try {  // HF requires the replacements to be UTF-8
      for (size_t pos = 0; pos < replacements_.size();) utf8::decode(replacements_, pos);
    } catch (const std::invalid_argument& e) {
      not_a_model(std::string("precompiled charsmap replacements: ") + e.what());
    }
  }

  bool empty() const { return units_.empty(); }

  // The replacement of the shortest key that is a prefix of `key` (HF's Precompiled::transform: the first result
  // of the trie's common-prefix search), or nothing.
  std::optional<std::string_view> lookup(std::string_view key) const {
    if (units_.empty()) return std::nullopt;
    size_t node = offset(units_[0]);
    for (const char ch : key) {
      const auto label = static_cast<unsigned char>(ch);
      node ^= label;
      if (node >= units_.size() || (units_[node] & 0x800000FFu) != label) return std::nullopt;
      const uint32_t unit = units_[node];
      node ^= offset(unit);
      if ((unit >> 8) & 1) {  // has a leaf: a key ends here
        if (node >= units_.size()) return std::nullopt;
        const size_t value = units_[node] & 0x7FFFFFFFu;
        if (value >= replacements_.size()) return std::nullopt;
        const size_t end = replacements_.find('\0', value);
        return std::string_view(replacements_).substr(value, end == std::string::npos ? end : end - value);
      }
    }
    return std::nullopt;
  }

  // HF's Precompiled normalizer: each grapheme cluster shorter than 6 bytes is looked up whole and, when its prefix
  // is a key, replaced whole; otherwise its characters are looked up one by one. Changes follow HF's bookkeeping
  // (replace() below), alignment shifts included.
  Normalized apply(const Normalized& text, int64_t origin) const {
    if (empty()) return text;
    std::u32string cps;
    for (const Aligned& a : text) cps.push_back(a.cp);
    std::vector<Change> changes;
    bool modified = false;
    std::string key;
    const auto replace = [&](size_t old_count, std::string_view replacement) {
      modified = true;
      size_t added = 0;
      for (size_t pos = 0; pos < replacement.size(); ++added) changes.push_back({utf8::decode(replacement, pos), 0});
      const auto diff = static_cast<int64_t>(added) - static_cast<int64_t>(old_count);
      if (diff > 0) {
        for (size_t k = changes.size() - static_cast<size_t>(diff); k < changes.size(); ++k) changes[k].change = 1;
      } else if (diff < 0 && !changes.empty()) {
        changes.back().change += static_cast<int>(diff);  // may be an earlier character's: HF does the same
      }
    };
    for (size_t begin = 0; begin < cps.size();) {
      const size_t end = unicode::grapheme_cluster_end(cps, begin);
      key.clear();
      for (size_t i = begin; i < end; ++i) utf8::append(key, cps[i]);
      std::optional<std::string_view> whole;
      if (key.size() < 6 && (whole = lookup(key))) {
        replace(end - begin, *whole);
      } else {
        for (size_t i = begin; i < end; ++i) {
          key.clear();
          utf8::append(key, cps[i]);
          if (const auto one = lookup(key)) replace(1, *one);
          else changes.push_back({cps[i], 0});
        }
      }
      begin = end;
    }
    return modified ? transform(text, changes, origin) : text;
  }

 private:
  static uint32_t read32(const char* p) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= uint32_t(static_cast<unsigned char>(p[k])) << (8 * k);
    return v;
  }
  // darts-clone's unit layout: the offset to the children, scaled by 256 when bit 9 is set.
  static size_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }

  std::vector<uint32_t> units_;
  std::string replacements_;
};

// ---------------------------------------------------------------------------------------------------------------

class XLNetTokenizer final : public PieceVocabulary {
 public:
  explicit XLNetTokenizer(ModelProto model)
      : PieceVocabulary(texts_of(model.pieces)),
        charsmap_(model.charsmap),
        unk_id_(static_cast<int32_t>(model.unk_id)) {
    double min_score = std::numeric_limits<double>::infinity();
    for (const Piece& p : model.pieces) {
      scores_.push_back(p.score);
      min_score = std::min(min_score, static_cast<double>(p.score));
      for (size_t pos = 0; pos < p.text.size();) {
        utf8::decode(p.text, pos);
        if (pos < p.text.size()) prefixes_[p.text.substr(0, pos)].extends = true;
      }
    }
    for (const auto& [text, id] : ids_) prefixes_[text].id = id;
    unk_score_ = min_score - 10.0;  // tokenizers' K_UNK_PENALTY
    // transformers adds the unknown token, the control pieces and the user-defined pieces as added tokens, matched
    // in the raw text; its XLNetTokenizer declares <mask> with lstrip.
    for (size_t id = 0; id < model.pieces.size(); ++id) {
      const Piece& p = model.pieces[id];
      if (static_cast<int64_t>(id) != model.unk_id && p.type != kControl && p.type != kUserDefined) continue;
      AddedToken token{{}, static_cast<int32_t>(id), p.text == "<mask>"};
      for (size_t pos = 0; pos < p.text.size();) token.text.push_back(utf8::decode(p.text, pos));
      added_first_.push_back(token.text[0]);
      added_.push_back(std::move(token));
    }
  }

  Encoding encode(std::string_view text) const override {
    std::u32string cps;
    for (size_t pos = 0; pos < text.size();) cps.push_back(utf8::decode(text, pos));
    Encoding out;
    size_t segment = 0;  // start of the text not yet encoded
    for (size_t i = 0; i < cps.size();) {
      const AddedToken* match = added_token_at(cps, i);
      if (!match) {
        ++i;
        continue;
      }
      size_t start = i;
      if (match->lstrip)
        while (start > segment && (unicode::flags(cps[start - 1]) & unicode::kSpace)) --start;
      encode_segment(cps, segment, start, out);
      out.ids.push_back(match->id);
      i += match->text.size();
      out.offsets.push_back({static_cast<int64_t>(start), static_cast<int64_t>(i)});
      segment = i;
    }
    encode_segment(cps, segment, cps.size(), out);
    return out;
  }

 private:
  struct AddedToken {
    std::u32string text;
    int32_t id;
    bool lstrip;
  };

  static std::vector<std::string> texts_of(const std::vector<Piece>& pieces) {
    std::vector<std::string> out;
    out.reserve(pieces.size());
    for (const Piece& p : pieces) out.push_back(p.text);
    return out;
  }

  // The longest added token starting at cps[i] (HF's leftmost-longest match), or null.
  const AddedToken* added_token_at(const std::u32string& cps, size_t i) const {
    if (added_first_.find(cps[i]) == std::u32string::npos) return nullptr;
    const AddedToken* best = nullptr;
    for (const AddedToken& t : added_) {
      if ((!best || t.text.size() > best->text.size()) && cps.compare(i, t.text.size(), t.text) == 0) best = &t;
    }
    return best;
  }

  // Steps 2-4 of the file comment for the original code points [first, last).
  void encode_segment(const std::u32string& cps, size_t first, size_t last, Encoding& out) const {
    if (first >= last) return;
    Normalized text;
    text.reserve(last - first);
    for (size_t i = first; i < last; ++i) text.push_back({cps[i], int64_t(i), int64_t(i + 1)});
    replace_literal(text, U"``", U'"');
    replace_literal(text, U"''", U'"');
    text = charsmap_.apply(decompose_and_strip(text), static_cast<int64_t>(first));

    const auto space = [](char32_t cp) { return (unicode::flags(cp) & unicode::kSpace) != 0; };
    Normalized word;
    for (size_t i = 0; i < text.size();) {
      if (space(text[i].cp)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < text.size() && !space(text[j].cp)) ++j;
      // Metaspace: the marker takes the first character's alignment; the word is split before every marker.
      word.clear();
      if (text[i].cp != kMetaspace) word.push_back({kMetaspace, text[i].begin, text[i].end});
      word.insert(word.end(), text.begin() + i, text.begin() + j);
      for (size_t a = 0; a < word.size();) {
        size_t b = a + 1;
        while (b < word.size() && word[b].cp != kMetaspace) ++b;
        unigram(word, a, b, out);
        a = b;
      }
      i = j;
    }
  }

  // tokenizers' Unigram::encode_optimized over word[a, b): the best-scoring segmentation (ties keep the first
  // candidate, shorter pieces and earlier starts first), a character no single piece covers as unknown.
  void unigram(const Normalized& word, size_t a, size_t b, Encoding& out) const {
    const size_t n = b - a;
    struct Node {
      double score = 0;
      size_t start = 0;
      int32_t id = -1;  // -1: not reached yet
    };
    std::vector<Node> best(n + 1);
    std::string key;
    for (size_t s = 0; s < n; ++s) {
      const double base = best[s].score;
      bool single = false;
      key.clear();
      for (size_t e = s + 1; e <= n; ++e) {
        utf8::append(key, word[a + e - 1].cp);
        const auto it = prefixes_.find(key);
        if (it == prefixes_.end()) break;  // no piece starts with key
        if (const int32_t id = it->second.id; id >= 0) {
          const double score = base + scores_[id];
          if (best[e].id < 0 || score > best[e].score) best[e] = {score, s, id};
          single |= e == s + 1;
        }
        if (!it->second.extends) break;
      }
      if (!single && (best[s + 1].id < 0 || base + unk_score_ > best[s + 1].score))
        best[s + 1] = {base + unk_score_, s, unk_id_};
    }
    // Back from the end; consecutive unknowns become one token, whose id is its text's if that is a piece.
    struct Span {
      size_t start, end;
      int32_t id;
    };
    std::vector<Span> spans;
    for (size_t e = n; e > 0; e = best[e].start) {
      const Node& node = best[e];
      if (node.id == unk_id_ && !spans.empty() && spans.back().id == unk_id_ && spans.back().start == e)
        spans.back().start = node.start;
      else
        spans.push_back({node.start, e, node.id});
    }
    for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
      int32_t id = it->id;
      if (id == unk_id_ && it->end - it->start > 1) {
        key.clear();
        for (size_t k = it->start; k < it->end; ++k) utf8::append(key, word[a + k].cp);
        const int32_t piece = find(key);
        id = piece >= 0 ? piece : unk_id_;
      }
      out.ids.push_back(id);
      out.offsets.push_back({word[a + it->start].begin, word[a + it->end - 1].end});
    }
  }

  Charsmap charsmap_;
  int32_t unk_id_;
  std::vector<double> scores_;
  double unk_score_ = 0;
  // The pieces and their prefixes at code point boundaries (tokenizers' trie): the piece's id or -1, and whether a
  // longer piece starts with it.
  struct TrieNode {
    int32_t id = -1;
    bool extends = false;
  };
  std::unordered_map<std::string, TrieNode> prefixes_;
  std::vector<AddedToken> added_;
  std::u32string added_first_;  // the added tokens' first characters
};

}  // namespace

std::unique_ptr<Tokenizer> make_xlnet_tokenizer(std::string model_proto) {
  return std::make_unique<XLNetTokenizer>(parse_model(model_proto));
}

}  // namespace deformer
