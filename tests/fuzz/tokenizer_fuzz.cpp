// libFuzzer target: arbitrary bytes into WordPiece encode() and, when DEFORMER_FUZZ_SPIECE names xlnet-base-cased's
// SentencePiece model, the XLNet tokenizer's. Invalid UTF-8 must be a std::invalid_argument, never a crash; valid
// input must give one offset per id, inside the text (non-empty for WordPiece; XLNet follows Hugging Face's
// alignment, whose spans of normalised-away characters may be empty), and ids inside the vocabulary.
// Built with clang -fsanitize=fuzzer,address,undefined by tests/fuzz.cmake, straight from the tokenizer
// sources (the deformer library itself links LibTorch and is not instrumented).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "deformer/tokenizer.h"

namespace {

// Small, but with multi-byte, CJK, continuation and special tokens so every branch is reachable.
const char* const kVocab =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nab\n##a\n##b\n##ab\n##\n#\n,\n.\n!\né\n##é\ne\n##e\n"
    "北\n京\nσ\n##σ\nı\ni\n##i\nss\nß\n##ß\n\xe0\xa4\x95\n##\xe0\xa5\x8d\n\xf0\x9f\x98\x80\n";

int64_t code_points(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::unique_ptr<deformer::Tokenizer> xlnet_or_null() {
  const char* path = std::getenv("DEFORMER_FUZZ_SPIECE");
  if (!path || !*path) return nullptr;
  std::ifstream in(path, std::ios::binary);
  std::stringstream model;
  model << in.rdbuf();
  return deformer::make_xlnet_tokenizer(model.str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto uncased = deformer::make_wordpiece(kVocab, true);
  static const auto cased = deformer::make_wordpiece(kVocab, false);
  static const auto xlnet = xlnet_or_null();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<const deformer::Tokenizer*> tokenizers{uncased.get(), cased.get()};
  if (xlnet) tokenizers.push_back(xlnet.get());
  for (const auto* tokenizer : tokenizers) {
    deformer::Encoding e;
    try {
      e = tokenizer->encode(text);
    } catch (const std::invalid_argument&) {
      continue;
    }
    const int64_t length = code_points(text);
    if (e.ids.size() != e.offsets.size()) __builtin_trap();
    for (size_t i = 0; i < e.ids.size(); ++i) {
      const auto& o = e.offsets[i];
      const bool empty_allowed = tokenizer == xlnet.get();
      if (o.begin < 0 || o.end > length || o.begin > o.end || (o.begin == o.end && !empty_allowed)) __builtin_trap();
      if (e.ids[i] < 0 || static_cast<size_t>(e.ids[i]) >= tokenizer->vocab_size()) __builtin_trap();
    }
  }
  return 0;
}
