// SentencePiece (XLNet) through libdeformer_spm.so, loaded at run time (spm_bridge.h explains why it is not
// linked). The bridge stays loaded for the life of the process: unloading a library that registered protobuf
// descriptors is a known source of crashes at exit.
//
// It is loaded into a link-map namespace of its own (dlmopen LM_ID_NEWLM): the bridge, libsentencepiece with its
// protobuf-lite, and their own libstdc++ and libc see none of the process's symbols, so neither LibTorch's
// libprotobuf nor libraries that interpose libstdc++ or malloc symbols (pip LibTorch, tcmalloc) can meet them.
// RTLD_DEEPBIND, the fallback when a namespace cannot be made, isolates only the bridge's own lookups and was seen
// to abort next to pip LibTorch. Only C data crosses, and memory is freed on the side that allocated it.

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "deformer/tokenizer.h"
#include "tokenizer/spm_bridge.h"
#include "tokenizer/unicode.h"
#include "tokenizer/utf8.h"

namespace deformer {
namespace {

struct Bridge {
  deformer_spm_load_fn load = nullptr;
  deformer_spm_free_fn free = nullptr;
  deformer_spm_vocab_size_fn vocab_size = nullptr;
  deformer_spm_piece_to_id_fn piece_to_id = nullptr;
  deformer_spm_id_to_piece_fn id_to_piece = nullptr;
  deformer_spm_encode_fn encode = nullptr;
  deformer_spm_release_fn release = nullptr;
};

// DEFORMER_SPM_BRIDGE, else next to libdeformer.so (build tree and install prefix alike), else the
// dynamic loader's search path.
std::vector<std::string> bridge_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("DEFORMER_SPM_BRIDGE"); env && *env) out.emplace_back(env);
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&make_sentencepiece), &info) && info.dli_fname) {
    std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) out.push_back(self.substr(0, slash + 1) + "libdeformer_spm.so");
  }
  out.emplace_back("libdeformer_spm.so");
  return out;
}

const Bridge& bridge() {
  static std::once_flag once;
  static Bridge b;
  static std::string error;
  std::call_once(once, [] {
    void* handle = nullptr;
    std::string tried;
    const bool deepbind = std::getenv("DEFORMER_SPM_DEEPBIND") != nullptr;  // for comparing the two on a machine
    for (const auto& path : bridge_candidates()) {
      if (!deepbind) {
        handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (handle) break;
        tried += "\n  " + path + " (own namespace): " + dlerror();
      }
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle) break;
      tried += "\n  " + path + ": " + dlerror();
    }
    if (!handle) {
      error = "SentencePiece support needs libdeformer_spm.so (built when libsentencepiece-dev is installed; "
              "DEFORMER_SPM_BRIDGE names it explicitly); tried:" + tried;
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(handle, name);
      if (!p && error.empty()) error = std::string("libdeformer_spm.so lacks ") + name;
      return p;
    };
    auto version = reinterpret_cast<deformer_spm_abi_version_fn>(sym("deformer_spm_abi_version"));
    b.load = reinterpret_cast<deformer_spm_load_fn>(sym("deformer_spm_load"));
    b.free = reinterpret_cast<deformer_spm_free_fn>(sym("deformer_spm_free"));
    b.vocab_size = reinterpret_cast<deformer_spm_vocab_size_fn>(sym("deformer_spm_vocab_size"));
    b.piece_to_id = reinterpret_cast<deformer_spm_piece_to_id_fn>(sym("deformer_spm_piece_to_id"));
    b.id_to_piece = reinterpret_cast<deformer_spm_id_to_piece_fn>(sym("deformer_spm_id_to_piece"));
    b.encode = reinterpret_cast<deformer_spm_encode_fn>(sym("deformer_spm_encode"));
    b.release = reinterpret_cast<deformer_spm_release_fn>(sym("deformer_spm_release"));
    if (error.empty() && version() != DEFORMER_SPM_ABI_VERSION)
      error = "libdeformer_spm.so has ABI version " + std::to_string(version()) + ", this library expects " +
              std::to_string(DEFORMER_SPM_ABI_VERSION);
  });
  if (!error.empty()) throw std::runtime_error(error);
  return b;
}

// HF XLNetTokenizer's special tokens, matched literally in the raw text before any normalization (added tokens).
const char* const kXLNetSpecials[] = {"<unk>", "<mask>", "<cls>", "<sep>", "<pad>", "<eop>", "<eod>", "</s>", "<s>"};

// A normalized code point and the span of original code points it came from.
struct Normalized {
  char32_t cp;
  int64_t begin, end;
};

// HF XLNetTokenizer's normalization before SentencePiece's own (tokenizers: Replace "``" and "''" by '"', NFKD,
// StripAccents = drop nonspacing marks), each output code point remembering its original span.
std::vector<Normalized> xlnet_normalize(const std::u32string& text, int64_t first, int64_t last) {
  std::vector<Normalized> out;
  char32_t buffer[unicode::kMaxDecomposition];
  for (int64_t i = first; i < last;) {
    if ((text[i] == U'`' || text[i] == U'\'') && i + 1 < last && text[i + 1] == text[i]) {
      out.push_back({U'"', i, i + 2});
      i += 2;
      continue;
    }
    const int n = unicode::decompose_compatibility(text[i], buffer);
    const size_t start = out.size();
    for (int k = 0; k < n; ++k) out.push_back({buffer[k], i, i + 1});
    // Canonical order of combining marks within what this character decomposed to (a stable sort by class).
    std::stable_sort(out.begin() + start, out.end(), [](const Normalized& a, const Normalized& b) {
      const uint8_t ca = unicode::combining_class(a.cp), cb = unicode::combining_class(b.cp);
      return ca != 0 && cb != 0 && ca < cb;
    });
    ++i;
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const Normalized& n) { return unicode::flags(n.cp) & unicode::kMn; }),
            out.end());
  return out;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& proto, bool xlnet) : bridge_(bridge()), xlnet_(xlnet) {
    char err[512] = {0};
    model_ = bridge_.load(proto.data(), proto.size(), err, sizeof err);
    if (!model_) throw std::invalid_argument(err);
    const int n = bridge_.vocab_size(model_);
    for (int id = 0; id < n; ++id) {
      const char* piece = bridge_.id_to_piece(model_, id);
      pieces_.emplace_back(piece ? piece : "");
    }
    special_.pad = token_to_id("<pad>");
    special_.unk = token_to_id("<unk>");
    special_.cls = token_to_id("<cls>");
    special_.sep = token_to_id("<sep>");
    special_.mask = token_to_id("<mask>");
  }
  ~SentencePieceTokenizer() override { bridge_.free(model_); }

  Encoding encode(std::string_view text) const override { return xlnet_ ? encode_xlnet(text) : encode_plain(text); }

  Encoding encode_plain(std::string_view text) const {
    // Validate first: the error must name our byte offset, and SentencePiece must only see valid UTF-8.
    std::vector<int64_t> index_of_byte(text.size() + 1);
    size_t pos = 0;
    int64_t cp = 0;
    while (pos < text.size()) {
      const size_t start = pos;
      if (static_cast<unsigned char>(text[pos]) < 0x80) ++pos; else utf8::decode(text, pos);
      for (size_t b = start; b < pos; ++b) index_of_byte[b] = cp;
      ++cp;
    }
    index_of_byte[text.size()] = cp;
    int32_t* raw = nullptr;
    size_t count = 0;
    char err[512] = {0};
    if (bridge_.encode(model_, text.data(), text.size(), &raw, &count, err, sizeof err) != 0)
      throw std::runtime_error(err);
    Encoding out;
    out.ids.reserve(count);
    out.offsets.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      const auto begin = static_cast<size_t>(raw[3 * i + 1]), end = static_cast<size_t>(raw[3 * i + 2]);
      out.ids.push_back(raw[3 * i]);
      out.offsets.push_back({index_of_byte[std::min(begin, text.size())], index_of_byte[std::min(end, text.size())]});
    }
    bridge_.release(raw);
    return out;
  }

  // HF XLNetTokenizer: literal special tokens first; the text between them normalized as xlnet_normalize says, then
  // SentencePiece (with the model's own normalizer, HF's Precompiled step, and its whitespace handling, HF's
  // WhitespaceSplit + Metaspace). Offsets map back through both normalizations; a piece's leading "\u2581" that
  // stands for whitespace or the word start is aligned, as in HF, to the word's first character.
  Encoding encode_xlnet(std::string_view text) const {
    std::u32string cps;
    for (size_t pos = 0; pos < text.size();) cps.push_back(utf8::decode(text, pos));
    Encoding out;
    const int64_t n = cps.size();
    int64_t segment = 0;
    for (int64_t i = 0; i <= n; ++i) {
      int32_t special = -1;
      size_t length = 0;
      if (i < n && cps[i] == U'<') {
        for (const char* s : kXLNetSpecials) {
          const std::string_view literal(s);
          if (i + int64_t(literal.size()) > n) continue;
          bool same = true;
          for (size_t k = 0; same && k < literal.size(); ++k) same = cps[i + k] == char32_t(literal[k]);
          if (same && literal.size() > length) {
            length = literal.size();
            special = token_to_id(literal);
          }
        }
      }
      if (i < n && special < 0) continue;
      encode_segment(cps, segment, i, out);
      if (special >= 0) {
        out.ids.push_back(special);
        out.offsets.push_back({i, i + int64_t(length)});
        i += length - 1;
        segment = i + 1;
      }
    }
    return out;
  }

  void encode_segment(const std::u32string& cps, int64_t first, int64_t last, Encoding& out) const {
    if (first >= last) return;
    const auto norm = xlnet_normalize(cps, first, last);
    std::string utf8_text;
    std::vector<size_t> char_of_byte;
    for (size_t c = 0; c < norm.size(); ++c) {
      utf8::append(utf8_text, norm[c].cp);
      char_of_byte.resize(utf8_text.size(), c);
    }
    char_of_byte.push_back(norm.size());
    int32_t* raw = nullptr;
    size_t count = 0;
    char err[512] = {0};
    if (bridge_.encode(model_, utf8_text.data(), utf8_text.size(), &raw, &count, err, sizeof err) != 0)
      throw std::runtime_error(err);
    for (size_t p = 0; p < count; ++p) {
      const size_t b = std::min<size_t>(raw[3 * p + 1], utf8_text.size()), e = std::min<size_t>(raw[3 * p + 2], utf8_text.size());
      size_t cb = char_of_byte[b];
      const size_t ce = e > b ? char_of_byte[e - 1] + 1 : cb;
      while (cb < ce && (unicode::flags(norm[cb].cp) & unicode::kSpace)) ++cb;
      TokenOffset offset;
      if (cb < ce) {
        offset = {norm[cb].begin, norm[ce - 1].end};
      } else {
        // A lone "\u2581": HF aligns it with the first character of the word it starts.
        size_t next = cb;
        while (next < norm.size() && (unicode::flags(norm[next].cp) & unicode::kSpace)) ++next;
        offset = next < norm.size() ? TokenOffset{norm[next].begin, norm[next].end} : TokenOffset{last, last};
      }
      out.ids.push_back(raw[3 * p]);
      out.offsets.push_back(offset);
    }
    bridge_.release(raw);
  }

  const SpecialTokens& special_tokens() const override { return special_; }
  size_t vocab_size() const override { return pieces_.size(); }
  const std::string& id_to_token(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size())
      throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary of " +
                              std::to_string(pieces_.size()));
    return pieces_[id];
  }
  int32_t token_to_id(std::string_view token) const override {
    return bridge_.piece_to_id(model_, token.data(), token.size());
  }
  const char* type() const override { return "sentencepiece"; }

 private:
  const Bridge& bridge_;
  bool xlnet_ = false;
  deformer_spm* model_ = nullptr;
  std::vector<std::string> pieces_;
  SpecialTokens special_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece(std::string model_proto) {
  return std::make_unique<SentencePieceTokenizer>(model_proto, false);
}

std::unique_ptr<Tokenizer> make_xlnet_tokenizer(std::string model_proto) {
  return std::make_unique<SentencePieceTokenizer>(model_proto, true);
}

}  // namespace deformer
