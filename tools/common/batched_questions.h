#pragma once
// Independent questions answered together, the way deformer-qa's --questions and serve batch them: questions over
// their own text in one Reader::ask, those over named cached documents in another, the rest in one retrieval call.
// The answers are those of each question alone (the reader's batching does not change them).
#include <string>
#include <vector>

#include "deformer/reader.h"
#include "deformer/retrieval.h"

namespace deformer::cli {

// What cached questions are read against: the documents they name, else those `index` finds, else (no index) every
// cached document.
struct CorpusSource {
  const cache::CacheReader* cache = nullptr;
  const retrieval::TextIndex* index = nullptr;  // may be null
  retrieval::RetrievalOptions retrieval;
};

struct BatchedQuestion {
  std::string question;
  bool cached = false;                  // read over the corpus, not over `context`
  std::string context;                  // its own text (not cached)
  std::string context_doc = "context";  // the answers' doc over `context`
  std::vector<std::string> docs;        // cached: the documents named; empty: retrieval, or every document
};

// Throws std::invalid_argument as Reader::ask does; `corpus` may be null when no question is cached.
std::vector<std::vector<Answer>> answer_together(const Reader& reader, const CorpusSource* corpus,
                                                 const std::vector<BatchedQuestion>& questions);

}  // namespace deformer::cli
