// BERT WordPiece with Hugging Face `tokenizers` semantics (BertNormalizer, BertPreTokenizer, WordPiece model,
// special tokens matched literally in the raw text), ids and offsets identical to BertTokenizerFast.
//
// The text is first normalized into a code point buffer where every normalized code point remembers the
// original code point it came from; HF's alignments give the same mapping because each of its BERT
// normalization steps rewrites one character at a time. Token offsets are then [source of the first
// code point, source of the last one + 1).

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "deformer/tokenizer.h"
#include "text/unicode.h"
#include "text/utf8.h"

namespace deformer {
namespace {

using unicode::flags;

// Normalized-buffer code points above Unicode's range stand for a special token found in the raw text.
constexpr char32_t kSpecialBase = 0x110000;
// HF WordPiece's max_input_chars_per_word: longer words become one [UNK].
constexpr size_t kMaxWordChars = 100;

// Open-addressing table of string_view -> id. Greedy longest-match tries mostly keys that are absent, so
// each slot keeps the full 64-bit hash and a miss rarely touches the key bytes; std::unordered_map spent
// most of the tokenizer's time walking bucket chains and comparing strings.
class VocabMap {
 public:
  void insert(std::string_view key, int32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    place(key, hash(key), id);
  }

  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && s.key == key) return s.id;
    }
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    std::string_view key;
    int32_t id = -1;
  };

  static uint64_t hash(std::string_view s) {
    // FNV-1a, then a finalizer so the low bits used for the slot index are well mixed.
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
  }

  void place(std::string_view key, uint64_t h, int32_t id) {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = {h, key, id};
        ++count_;
        return;
      }
      if (s.hash == h && s.key == key) {  // a later duplicate line wins, as in HF's HashMap insert
        s.id = id;
        return;
      }
    }
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    count_ = 0;
    for (const Slot& s : old)
      if (s.id >= 0) place(s.key, s.hash, s.id);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

class WordPieceTokenizer final : public Tokenizer {
 public:
  WordPieceTokenizer(std::string vocab_text, bool do_lower_case) : lower_(do_lower_case) {
    size_t pos = 0;
    while (pos < vocab_text.size()) {
      size_t eol = vocab_text.find('\n', pos);
      if (eol == std::string::npos) eol = vocab_text.size();
      std::string line = vocab_text.substr(pos, eol - pos);
      // HF reads the file with lines() and trims trailing whitespace of each token.
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      tokens_.push_back(std::move(line));
      pos = eol + 1;
    }
    if (tokens_.empty()) throw std::invalid_argument("WordPiece vocabulary is empty");
    for (size_t id = 0; id < tokens_.size(); ++id) {
      std::string_view token = tokens_[id];
      // Later duplicates win, as in HF's HashMap insert.
      if (token.size() > 2 && token.compare(0, 2, "##") == 0) {
        std::string_view piece = token.substr(2);
        pieces_.insert(piece, static_cast<int32_t>(id));
        max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());
      }
      words_.insert(token, static_cast<int32_t>(id));
      max_word_bytes_ = std::max(max_word_bytes_, token.size());
    }
    // "##" alone is a whole-word token, not a continuation with an empty suffix.
    auto require = [&](const char* token) {
      int32_t id = token_to_id(token);
      if (id < 0) throw std::invalid_argument(std::string("WordPiece vocabulary lacks ") + token);
      return id;
    };
    special_.unk = require("[UNK]");
    special_.cls = require("[CLS]");
    special_.sep = require("[SEP]");
    special_.pad = require("[PAD]");
    special_.mask = token_to_id("[MASK]");
    for (const char* token : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      int32_t id = token_to_id(token);
      if (id >= 0) literal_specials_.emplace_back(token, id);
    }
  }

  Encoding encode(std::string_view text) const override {
    std::vector<char32_t> norm;
    std::vector<int64_t> src;
    normalize(text, norm, src);
    Encoding out;
    out.ids.reserve(norm.size() / 4 + 4);
    out.offsets.reserve(norm.size() / 4 + 4);
    std::string buf;
    std::vector<uint32_t> bounds;
    const size_t n = norm.size();
    size_t word = n;  // start of the current word, n when none
    auto flush = [&](size_t end) {
      if (word < end) tokenize_word(norm.data() + word, src.data() + word, end - word, out, buf, bounds);
      word = n;
    };
    for (size_t k = 0; k < n; ++k) {
      const char32_t c = norm[k];
      if (c >= kSpecialBase) {
        flush(k);
        const auto& special = literal_specials_[c - kSpecialBase];
        out.ids.push_back(special.second);
        out.offsets.push_back({src[k], src[k] + static_cast<int64_t>(special.first.size())});
        continue;
      }
      const uint8_t f = flags(c);
      if (f & unicode::kSpace) {
        flush(k);
      } else if (f & unicode::kPunct) {
        flush(k);
        tokenize_word(norm.data() + k, src.data() + k, 1, out, buf, bounds);
      } else if (word == n) {
        word = k;
      }
    }
    flush(n);
    return out;
  }

  const SpecialTokens& special_tokens() const override { return special_; }
  size_t vocab_size() const override { return tokens_.size(); }
  const std::string& id_to_token(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size())
      throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary of " +
                              std::to_string(tokens_.size()));
    return tokens_[id];
  }
  int32_t token_to_id(std::string_view token) const override {
    return words_.find(token);
  }
  const char* type() const override { return "wordpiece"; }

 private:
  // BertNormalizer: clean text, isolate CJK ideographs, then (uncased) NFD without Mn and lowercase.
  void normalize(std::string_view text, std::vector<char32_t>& norm, std::vector<int64_t>& src) const {
    norm.reserve(text.size() + 8);
    src.reserve(text.size() + 8);
    bool reorder = false;
    auto push = [&](char32_t c, int64_t i) {
      norm.push_back(c);
      src.push_back(i);
    };
    auto emit = [&](char32_t cp, uint8_t f, int64_t i) {
      if (!lower_) return push(cp, i);
      char32_t decomposed[4];
      int count = 1;
      decomposed[0] = cp;
      if (f & unicode::kDecomp)
        count = unicode::decompose(cp, decomposed);
      else if (cp >= unicode::kHangulFirst && cp <= unicode::kHangulLast)
        count = unicode::decompose_hangul(cp, decomposed);
      for (int j = 0; j < count; ++j) {
        const char32_t d = decomposed[j];
        const uint8_t fd = j == 0 && count == 1 ? f : flags(d);
        if (fd & unicode::kMn) continue;
        if (fd & unicode::kCcc) reorder = true;
        if (fd & unicode::kLower) {
          char32_t lowered[3];
          const int m = unicode::lowercase(d, lowered);
          for (int q = 0; q < m; ++q) push(lowered[q], i);
        } else {
          push(d, i);
        }
      }
    };

    size_t pos = 0;
    int64_t index = 0;  // code point index of the character at byte `pos`
    while (pos < text.size()) {
      const unsigned char byte = static_cast<unsigned char>(text[pos]);
      if (byte == '[' && !literal_specials_.empty()) {
        const auto* special = match_special(text.substr(pos));
        if (special) {
          push(kSpecialBase + static_cast<char32_t>(special - literal_specials_.data()), index);
          pos += special->first.size();
          index += static_cast<int64_t>(special->first.size());  // special tokens are ASCII
          continue;
        }
      }
      const char32_t cp = byte < 0x80 ? (++pos, byte) : utf8::decode(text, pos);
      const int64_t i = index++;
      const uint8_t f = flags(cp);
      if (cp == 0 || cp == 0xFFFD) continue;
      if ((f & unicode::kOther) && cp != '\t' && cp != '\n' && cp != '\r') continue;
      if (f & unicode::kSpace) {
        push(' ', i);
      } else if (f & unicode::kCjk) {
        push(' ', i);
        emit(cp, f, i);
        push(' ', i);
      } else {
        emit(cp, f, i);
      }
    }
    // NFD's canonical ordering. Sorting before or after dropping Mn gives the same order for the rest,
    // so only the surviving nonzero-class marks (a few spacing marks) are sorted, and only when present.
    if (reorder) {
      size_t k = 0;
      while (k < norm.size()) {
        if (norm[k] >= kSpecialBase || unicode::combining_class(norm[k]) == 0) {
          ++k;
          continue;
        }
        size_t end = k;
        while (end < norm.size() && norm[end] < kSpecialBase && unicode::combining_class(norm[end]) != 0) ++end;
        std::vector<std::pair<char32_t, int64_t>> run;
        for (size_t q = k; q < end; ++q) run.emplace_back(norm[q], src[q]);
        std::stable_sort(run.begin(), run.end(), [](const auto& a, const auto& b) {
          return unicode::combining_class(a.first) < unicode::combining_class(b.first);
        });
        for (size_t q = k; q < end; ++q) std::tie(norm[q], src[q]) = run[q - k];
        k = end;
      }
    }
  }

  const std::pair<std::string, int32_t>* match_special(std::string_view rest) const {
    for (const auto& special : literal_specials_)
      if (rest.size() >= special.first.size() && rest.compare(0, special.first.size(), special.first) == 0)
        return &special;
    return nullptr;
  }

  // Greedy longest-match-first over one pre-token.
  void tokenize_word(const char32_t* chars, const int64_t* src, size_t n, Encoding& out, std::string& buf,
                     std::vector<uint32_t>& bounds) const {
    if (n > kMaxWordChars) {
      out.ids.push_back(special_.unk);
      out.offsets.push_back({src[0], src[n - 1] + 1});
      return;
    }
    buf.clear();
    bounds.resize(n + 1);
    for (size_t k = 0; k < n; ++k) {
      bounds[k] = static_cast<uint32_t>(buf.size());
      utf8::append(buf, chars[k]);
    }
    bounds[n] = static_cast<uint32_t>(buf.size());
    const size_t rollback = out.ids.size();
    size_t start = 0;
    while (start < n) {
      const VocabMap& map = start == 0 ? words_ : pieces_;
      const size_t max_bytes = start == 0 ? max_word_bytes_ : max_piece_bytes_;
      size_t end = n;
      while (end > start && bounds[end] - bounds[start] > max_bytes) --end;
      int32_t id = -1;
      for (; end > start; --end) {
        id = map.find(std::string_view(buf).substr(bounds[start], bounds[end] - bounds[start]));
        if (id >= 0) break;
      }
      if (id < 0) {
        out.ids.resize(rollback);
        out.offsets.resize(rollback);
        out.ids.push_back(special_.unk);
        out.offsets.push_back({src[0], src[n - 1] + 1});
        return;
      }
      out.ids.push_back(id);
      out.offsets.push_back({src[start], src[end - 1] + 1});
      start = end;
    }
  }

  bool lower_;
  std::vector<std::string> tokens_;
  VocabMap words_;   // every token, by its full text
  VocabMap pieces_;  // continuation tokens "##x", by "x"
  size_t max_word_bytes_ = 0;
  size_t max_piece_bytes_ = 0;
  SpecialTokens special_;
  std::vector<std::pair<std::string, int32_t>> literal_specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_wordpiece(std::string vocab_text, bool do_lower_case) {
  return std::make_unique<WordPieceTokenizer>(std::move(vocab_text), do_lower_case);
}

}  // namespace deformer
