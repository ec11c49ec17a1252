#pragma once
// The plain types that several layers share: a document, a range of its tokens, a range of its characters. No
// dependencies, so that the storage layer (deformer/cache.h) needs neither the tokenizer nor the model.

#include <cstdint>
#include <string>

namespace deformer {

// A document as callers hand it to the reader and the cache builder.
struct Document {
  std::string id;
  std::string text;   // UTF-8
  std::string title;  // optional; a cache's retrieval index searches and lists it
};

// [begin, end) of a document's tokens.
struct TokenSpan {
  int64_t begin = 0;
  int64_t end = 0;
};

// [begin, end) in Unicode code points of a text (Python string indices, the unit of SQuAD's answer_start): a token's
// place in its text (the tokenizer's offsets), as the cache stores it.
struct CharSpan {
  int64_t begin = 0;
  int64_t end = 0;
  bool operator==(const CharSpan& other) const { return begin == other.begin && end == other.end; }
};

}  // namespace deformer
