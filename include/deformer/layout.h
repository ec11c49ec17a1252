#pragma once
// Input layouts (docs/design.md, 'Layouts'), as plain id vectors (no torch): the paper's question and document
// blocks for deformer mode, and Hugging Face's windows for full mode. Two conventions (docs/xlnet.md):
//   BERT:  question block [CLS] q [SEP]; document block d [SEP]; joint [question ; document];
//          full [CLS] q [SEP] d [SEP], right-padded.
//   XLNet: question block q <sep> <cls>; document block d <sep>; joint [document ; question];
//          full d <sep> q <sep> <cls>, left-padded, segments 0 / 1 / 2 (<cls>) and 3 (padding), as HF's
//          XLNetTokenizer writes them.
// Padding uses SpecialTokens::pad for XLNet and id 0 for BERT.

#include <array>
#include <cstdint>
#include <vector>

#include "deformer/model.h"      // ModelConfig
#include "deformer/tokenizer.h"  // SpecialTokens
#include "deformer/types.h"      // TokenSpan

namespace deformer {

enum class Convention { kBert, kXLNet };
// The convention of a model's type.
Convention convention_of(const ModelConfig& config);

// One padded row: ids, token types, positions and the key mask (1 real, 0 padding), all of one length.
struct Block {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> token_type_ids;
  std::vector<int64_t> position_ids;
  std::vector<int64_t> attention_mask;
  bool truncated = false;  // the input did not fit and was cut
  int context_begin = -1;  // index of the first window token (-1: the block holds none)
  int cls_position = -1;   // index of [CLS] / <cls> (-1: the block holds none)
};

// [CLS] question[: length - 2] [SEP], right-padded to length; types 0; positions 0..length-1.
// XLNet: q[: length - 2] <sep> <cls>, right-padded with <pad>; types 1; positions 0..length-1.
Block question_block(const std::vector<int64_t>& question_ids, int length, const SpecialTokens& special,
                     Convention convention = Convention::kBert);

// window [SEP], right-padded to length (no [CLS]); types 1; positions 0..length-1. A window longer than
// length - 1 tokens is a caller error (std::invalid_argument): windowing must respect the block.
// XLNet: the same, padded with <pad>, types 0.
Block document_block(const std::vector<int64_t>& window_ids, int length, const SpecialTokens& special,
                     Convention convention = Convention::kBert);

// [CLS] question [SEP] window [SEP], right-padded to length; types 0 then 1; contiguous positions.
// The question is cut to max_question_len tokens first; the total must fit in length.
// XLNet: window <sep> question <sep> <cls>, left-padded with <pad> (HF's padding side for XLNet).
Block full_block(const std::vector<int64_t>& question_ids, const std::vector<int64_t>& window_ids, int length,
                 int max_question_len, const SpecialTokens& special, Convention convention = Convention::kBert);

// Question-independent windows over a document's tokens: [begin, end) token ranges of at most `window`
// tokens, starting every `stride` tokens, the last one reaching the end. Throws std::invalid_argument
// unless 0 < stride < window. An empty document has no windows.
std::vector<TokenSpan> document_windows(int64_t num_tokens, int window, int stride);

// Batches by length. Row i has a real length in each of two parts (a question block and a document block are
// padded separately; single-part rows give 0 for the second), and a batch pads every row to its longest in each
// part. Splits the rows into batches of at most max_rows that minimise the padded tokens plus `call_cost` tokens
// per batch (what a forward pass costs beyond its tokens): rows sorted by length, then an exact dynamic program
// over the cuts. Returns row indices, batch by batch, shortest batch first; every row appears once. Throws
// std::invalid_argument for max_rows < 1, a negative call_cost or a negative length.
std::vector<std::vector<size_t>> plan_batches(const std::vector<std::array<int64_t, 2>>& lengths, int64_t max_rows,
                                              int64_t call_cost);

}  // namespace deformer
