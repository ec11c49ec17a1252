// libFuzzer target: arbitrary bytes into WordPiece encode(). Invalid UTF-8 must be a std::invalid_argument,
// never a crash; valid input must give one offset per id, inside the text, non-empty.
// Built with clang -fsanitize=fuzzer,address,undefined by tests/fuzz.cmake, straight from the tokenizer
// sources (the deformer library itself links LibTorch and is not instrumented).

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string_view>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto uncased = deformer::make_wordpiece(kVocab, true);
  static const auto cased = deformer::make_wordpiece(kVocab, false);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const auto* tokenizer : {uncased.get(), cased.get()}) {
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
      if (o.begin < 0 || o.begin >= o.end || o.end > length) __builtin_trap();
      if (e.ids[i] < 0 || static_cast<size_t>(e.ids[i]) >= tokenizer->vocab_size()) __builtin_trap();
    }
  }
  return 0;
}
