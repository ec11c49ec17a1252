#pragma once
// Answer decoding from start/end logits (docs/design.md, 'Decoding'), free of torch so it can be tested on its own.
//
// Two semantics:
//  - Pipeline (Hugging Face QuestionAnsweringPipeline): per window, softmax of start and of end logits over the
//    null position and the window's context tokens, span score p_start * p_end with 0 <= end - start <
//    max_answer_len, the top_k spans of each window, answers aligned to whole words, the null answer scored
//    min over windows of p_start[null] * p_end[null]; answers of all windows pooled, duplicates (same
//    character span) merged keeping the best score, sorted, cut to top_k.
//  - Squad (utils_qa.py): raw logit sums start + end over the n_best_size best context starts and ends of each
//    window (utils_qa ranks all positions, then drops non-context ones, which can leave no answer at all),
//    end - start + 1 <= max_answer_length, token offsets (no word alignment), null = min over windows of
//    start[null] + end[null]; the null answer wins when null - best > null_threshold.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace deformer {

enum class Decoding { kPipeline, kSquad };

struct DecodeOptions {
  Decoding decoding = Decoding::kPipeline;  // which semantics (see above)
  int top_k = 1;                            // answers returned (pipeline); must be >= 1
  int max_answer_len = 15;                  // longest answer in tokens (pipeline)
  bool handle_impossible_answer = false;    // allow the empty answer (pipeline)
  int n_best_size = 20;                     // starts and ends considered per window (squad)
  int max_answer_length = 30;               // longest answer in tokens (squad)
  bool version_2_with_negative = false;     // allow the empty answer (squad)
  double null_threshold = 0.0;              // empty answer when null - best exceeds this (squad)
};

// Throws std::invalid_argument for top_k < 1, non-positive lengths or n_best_size.
void validate(const DecodeOptions& options);

// One window's model output, mapped to the document: for position i of the logits, context_token[i] is the
// index of the document token there, or -1 for question, special and padding positions.
struct WindowScores {
  const float* start_logits = nullptr;
  const float* end_logits = nullptr;
  std::vector<int64_t> context_token;  // one entry per logit position
  int64_t null_position = 0;           // where [CLS] sits (the null answer's logits)
};

// The document's tokens: character offsets [begin, end) into its text (code points), and the word of each token.
struct TokenizedDocument {
  std::vector<std::pair<int64_t, int64_t>> offsets;
  std::vector<int64_t> word_of_token;  // word index, non-decreasing
};

struct Answer {
  std::string answer;   // the text between start and end
  double score = 0;     // probability (pipeline) or logit sum (squad); retrieval: the combined score
  int64_t start = 0;    // character offsets into the document text, code points
  int64_t end = 0;
  std::string doc;      // document id
  double logits = 0;    // the span's start + end logits: unlike a probability, comparable across documents
  std::optional<double> retrieval_score;  // BM25 of the document, when it was retrieved (deformer/retrieval.h)
};

// A document answer candidate before text extraction.
struct Span {
  double score = 0;
  int64_t start = 0;  // characters
  int64_t end = 0;
  bool null = false;
  double logits = 0;  // start + end logits
};

// Decodes one document's windows into candidate spans (null included when allowed), best first, merged
// and cut as the chosen semantics say.
std::vector<Span> decode_document(const std::vector<WindowScores>& windows, const TokenizedDocument& document,
                                  const DecodeOptions& options);

// Text of [start, end) code points of a UTF-8 string.
std::string substring_by_code_points(const std::string& utf8, int64_t start, int64_t end);

}  // namespace deformer
