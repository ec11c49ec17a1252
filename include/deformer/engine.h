#pragma once
// Tensor-level split execution of a Model (docs/design.md, 'Layouts'). Include this only where tensors are
// needed; deformer/model.h and the reader API stay free of torch headers.
//
// All tensors are on the model's device. Ids, types, positions and masks are int64 [B, T]; hidden
// states are [B, T, H] in the model's dtype; logits are float32 [B, T, 2] (start, end). Every function
// is const on the model and safe to call from several threads at once.

#include <ATen/core/Tensor.h>

#include "deformer/model.h"

namespace deformer {
namespace engine {

// Embeddings of a block. XLNet embeds only the ids: its segments and positions enter the attention (run_layers).
at::Tensor embed(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                 const at::Tensor& position_ids);

// Encoder layers [begin, end) on hidden states; mask is 1 for real keys, 0 for padding. BERT only (XLNet throws
// std::invalid_argument: its layers need the segments and positions of the overload below).
at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, int begin, int end);

// The same for either model type. XLNet's relative attention uses segment_ids (compared for equality only) and
// position_ids (distance of query i to key j = position[i] - position[j], 0 <= position < T); BERT ignores both
// (they entered in embed).
at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, const at::Tensor& segment_ids,
                      const at::Tensor& position_ids, int begin, int end);

// Start/end logits of hidden states (float32).
at::Tensor qa_logits(const Model& model, const at::Tensor& hidden);

// Deformer lower half: question blocks [B, question_block] or document blocks [B, document_block] of ids
// (layout.h builds them) to their layer-k states. Positions start at 0 in each block; token type is 0 for
// questions and 1 for documents (XLNet: one segment per block); the mask is ids != the model's pad id. Blocks
// may be cut after the batch's longest real row (padding never changes real rows): the cost then follows the real
// lengths.
at::Tensor encode_questions(const Model& model, const at::Tensor& question_ids, int k);
at::Tensor encode_documents(const Model& model, const at::Tensor& document_ids, int k);

// Question blocks packed several to a row, so that short questions do not pay for padding: ids [rows, T], positions
// restarting at 0 for each question, and `segments` the question of each token within its row (-1 for padding).
// Attention stays within a question, so each question's states equal encode_questions on its block alone (up to
// rounding). BERT with native layers only: can_pack_questions says whether the model takes it, and others throw
// std::invalid_argument.
bool can_pack_questions(const Model& model);
at::Tensor encode_packed_questions(const Model& model, const at::Tensor& ids, const at::Tensor& positions,
                                   const at::Tensor& segments, int k);

// Deformer upper half: layers k..n-1 and the head on [question states ; document states] with the joint
// mask. Returns logits [B, question_block + document_block, 2]. XLNet (docs/xlnet.md): the joint sequence is
// [document ; question], so the logits are [B, document_block + question_block, 2] in that order; segments are
// document 0, question 1, the question block's last real token (<cls>) 2; positions run without the document's
// padding.
at::Tensor answer_logits(const Model& model, const at::Tensor& question_states, const at::Tensor& question_ids,
                         const at::Tensor& document_states, const at::Tensor& document_ids, int k);

// Full (standard) mode: all layers on layout.h's full_block rows with contiguous positions (XLNet: segments =
// token_type_ids).
at::Tensor full_logits(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                       const at::Tensor& attention_mask);

// Throws std::invalid_argument unless 0 <= k <= num_layers.
void check_split(const Model& model, int k);

}  // namespace engine
}  // namespace deformer
