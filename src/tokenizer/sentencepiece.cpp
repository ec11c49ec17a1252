// Plain SentencePiece through libdeformer_spm.so, loaded at run time (spm_bridge.h explains why it is not linked);
// XLNet's tokenizer (xlnet.cpp) needs no bridge. The bridge stays loaded for the life of the process: unloading a
// library that registered protobuf descriptors is a known source of crashes at exit.
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
#include <utility>
#include <vector>

#include "deformer/tokenizer.h"
#include "tokenizer/piece_vocabulary.h"
#include "tokenizer/spm_bridge.h"
#include "text/utf8.h"

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

// Plain SentencePiece: the model's own normalizer and encoder (libsentencepiece), offsets mapped back to code points.
class SentencePieceTokenizer final : public PieceVocabulary {
 public:
  SentencePieceTokenizer(const Bridge& b, deformer_spm* model)
      : PieceVocabulary(pieces_of(b, model)), bridge_(b), model_(model) {}
  ~SentencePieceTokenizer() override { bridge_.free(model_); }

  Encoding encode(std::string_view text) const override {
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

 private:
  static std::vector<std::string> pieces_of(const Bridge& b, const deformer_spm* model) {
    std::vector<std::string> pieces;
    const int n = b.vocab_size(model);
    for (int id = 0; id < n; ++id) {
      const char* piece = b.id_to_piece(model, id);
      pieces.emplace_back(piece ? piece : "");
    }
    return pieces;
  }

  const Bridge& bridge_;
  deformer_spm* model_;
};

}  // namespace

PieceVocabulary::PieceVocabulary(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {
  for (size_t id = 0; id < pieces_.size(); ++id) ids_[pieces_[id]] = static_cast<int32_t>(id);
  special_.pad = find("<pad>");
  special_.unk = find("<unk>");
  special_.cls = find("<cls>");
  special_.sep = find("<sep>");
  special_.mask = find("<mask>");
}

const std::string& PieceVocabulary::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size())
    throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary of " +
                            std::to_string(pieces_.size()));
  return pieces_[id];
}

int32_t PieceVocabulary::token_to_id(std::string_view token) const { return find(std::string(token)); }

std::unique_ptr<Tokenizer> make_sentencepiece(std::string model_proto) {
  const Bridge& b = bridge();
  char err[512] = {0};
  deformer_spm* model = b.load(model_proto.data(), model_proto.size(), err, sizeof err);
  if (!model) throw std::invalid_argument(err);
  try {
    return std::make_unique<SentencePieceTokenizer>(b, model);
  } catch (...) {
    b.free(model);
    throw;
  }
}

}  // namespace deformer
