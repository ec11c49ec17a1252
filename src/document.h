#pragma once
// Private: a document tokenized for the reader and the cache builder (no torch).
#include <cstdint>
#include <vector>

#include "deformer/cache.h"
#include "deformer/decode.h"
#include "deformer/reader.h"
#include "deformer/tokenizer.h"

namespace deformer {

struct PreparedDocument {
  const Document* source = nullptr;
  std::vector<int64_t> ids;
  TokenizedDocument tokens;  // offsets and words, for decoding
};

// Tokenizes a document. Throws std::invalid_argument naming the document when it is empty, has no
// tokens, is not UTF-8, or has more than `max_tokens` tokens (0: no limit).
PreparedDocument prepare_document(const Document& doc, const Tokenizer& tokenizer, int64_t max_tokens = 0);

// A cached document's tokens (offsets and words) from the cache, without ids: nothing is tokenized. A cache that
// records no words (written before they were stored) has the document tokenized, and std::runtime_error when
// those tokens differ from the cache's.
PreparedDocument prepare_cached_document(const Document& doc, const cache::CacheReader& cache, const Tokenizer& tokenizer);

}  // namespace deformer
