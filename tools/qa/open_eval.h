#pragma once
// deformer-qa eval --open (tools/qa/open_eval.cpp).
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deformer/reader.h"
#include "deformer/squad.h"

namespace deformer::cli {

struct OpenEvalOptions {
  int documents = 20;                          // documents retrieved and read per question
  std::vector<double> reader_weights = {0.5};  // BERTserini's mu, each scored from the same reads
  size_t every = 1;                            // questions of every n-th paragraph (a sample spread over articles)
  size_t limit = 0;                            // at most this many paragraphs' questions; 0: all
};

// Answers the sampled questions of `dataset` over the cache at `cache_path` through its retrieval index and scores
// them: {"questions", "recall": {"1", "5", "20"...}, "by_reader_weight": [{"reader_weight", "exact_match", "f1"}],
// "oracle_paragraph": {"exact_match", "f1"} (each question over its own paragraph), "seconds", ...}. `first` receives the predictions of the first reader weight.
nlohmann::json evaluate_open(const Reader& reader, const cache::CacheReader& cache, const std::string& cache_path,
                             const squad::Dataset& dataset, const OpenEvalOptions& options, squad::Predictions& first);

}  // namespace deformer::cli
