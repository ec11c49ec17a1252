#include "deformer/engine.h"

#include <stdexcept>
#include <string>

#include "model_impl.h"

namespace deformer {
namespace engine {
namespace {

at::Tensor call(const Model& model, const char* method, std::vector<c10::IValue> inputs) {
  c10::InferenceMode guard;
  return model.impl().module.get_method(method)(std::move(inputs)).toTensor();
}

// A block may be cut after the batch's longest real row (padding never changes real rows), so the length may
// be shorter than the layout's block, never longer.
void check_ids(const Model& model, const at::Tensor& ids, int64_t length, const char* what) {
  if (ids.dim() != 2 || ids.size(1) > length || ids.size(1) < 1)
    throw std::invalid_argument(std::string(what) + " must be [batch, at most " + std::to_string(length) + "], got " +
                                std::to_string(ids.dim()) + "-d " + c10::str(ids.sizes()));
  if (ids.scalar_type() != at::kLong) throw std::invalid_argument(std::string(what) + " must be int64");
  (void)model;
}

bool is_xlnet(const Model& model) { return model.config().model_type == "xlnet"; }

at::Tensor arange_rows(int64_t batch, int64_t length, const at::TensorOptions& options) {
  return at::arange(length, options).unsqueeze(0).expand({batch, length});
}

// Positions 0..T-1 for every row, token type `type` everywhere, mask = ids != pad. XLNet's lower layers see one
// segment per block (every pair "same segment"), so `type` does not change what they compute.
at::Tensor encode_block(const Model& model, const at::Tensor& ids, int64_t type, int k) {
  const int64_t batch = ids.size(0), length = ids.size(1);
  auto positions = arange_rows(batch, length, ids.options());
  auto types = at::full({batch, length}, type, ids.options());
  auto mask = ids.ne(model.config().pad_token_id).to(at::kLong);
  auto hidden = embed(model, ids, types, positions);
  return run_layers(model, hidden, mask, types, positions, 0, k);
}

// XLNet's upper layers on [document ; question] (docs/xlnet.md). The document block is right-padded, so its
// padding sits between the window and the question; position ids close that gap: real document rows keep 0..r-1,
// the question follows at r.., and the document's padding rows are numbered after the question. Segments:
// document 0, question 1, <cls> (the question block's last real token) 2: HF's segment ids, so that k = 0 equals
// HF's joint pass on the same window.
at::Tensor xlnet_answer_logits(const Model& model, const at::Tensor& question_states, const at::Tensor& question_ids,
                               const at::Tensor& document_states, const at::Tensor& document_ids, int k) {
  const int64_t pad = model.config().pad_token_id;
  const int64_t batch = document_ids.size(0), d_len = document_ids.size(1), q_len = question_ids.size(1);
  auto d_mask = document_ids.ne(pad).to(at::kLong), q_mask = question_ids.ne(pad).to(at::kLong);
  auto real = d_mask.sum(1, /*keepdim=*/true);
  auto d_index = arange_rows(batch, d_len, document_ids.options());
  auto d_positions = d_index + d_index.ge(real).to(at::kLong) * q_len;
  auto q_index = arange_rows(batch, q_len, question_ids.options());
  auto q_positions = real + q_index;
  auto d_segments = at::zeros_like(document_ids);
  auto q_segments = 1 + q_index.eq(q_mask.sum(1, /*keepdim=*/true) - 1).to(at::kLong);
  auto hidden = at::cat({document_states, question_states}, 1);
  auto upper = run_layers(model, hidden, at::cat({d_mask, q_mask}, 1), at::cat({d_segments, q_segments}, 1),
                          at::cat({d_positions, q_positions}, 1), k, model.config().num_layers);
  return qa_logits(model, upper);
}

}  // namespace

void check_split(const Model& model, int k) {
  const int n = model.config().num_layers;
  if (k < 0 || k > n)
    throw std::invalid_argument("split layer k=" + std::to_string(k) + " is out of range 0.." + std::to_string(n));
}

at::Tensor embed(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                 const at::Tensor& position_ids) {
  // A bad id would surface as an opaque "index out of range" from inside TorchScript. The check costs a
  // reduction; on CUDA it would also cost a host synchronisation, so there it is left to the callers.
  if (input_ids.is_cpu() && input_ids.numel() > 0) {
    const int64_t low = input_ids.min().item<int64_t>(), high = input_ids.max().item<int64_t>();
    if (low < 0 || high >= model.config().vocab_size)
      throw std::invalid_argument("token id " + std::to_string(low < 0 ? low : high) + " is outside the vocabulary 0.." +
                                  std::to_string(model.config().vocab_size - 1));
  }
  if (is_xlnet(model)) return call(model, "embed", {input_ids});
  return call(model, "embed", {input_ids, token_type_ids, position_ids});
}

at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, int begin, int end) {
  if (is_xlnet(model))
    throw std::invalid_argument("XLNet layers need segment and position ids (call run_layers with them)");
  check_split(model, begin);
  check_split(model, end);
  if (begin >= end) return hidden;
  return call(model, "encode", {hidden, mask, static_cast<int64_t>(begin), static_cast<int64_t>(end)});
}

at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, const at::Tensor& segment_ids,
                      const at::Tensor& position_ids, int begin, int end) {
  if (!is_xlnet(model)) return run_layers(model, hidden, mask, begin, end);
  check_split(model, begin);
  check_split(model, end);
  if (begin >= end) return hidden;
  return call(model, "encode", {hidden, mask, segment_ids, position_ids, static_cast<int64_t>(begin), static_cast<int64_t>(end)});
}

at::Tensor qa_logits(const Model& model, const at::Tensor& hidden) {
  return call(model, "qa_logits", {hidden}).to(at::kFloat);
}

at::Tensor encode_questions(const Model& model, const at::Tensor& question_ids, int k) {
  check_split(model, k);
  check_ids(model, question_ids, model.config().question_block, "question ids");
  return encode_block(model, question_ids, 0, k);
}

at::Tensor encode_documents(const Model& model, const at::Tensor& document_ids, int k) {
  check_split(model, k);
  check_ids(model, document_ids, model.config().document_block, "document ids");
  return encode_block(model, document_ids, 1, k);
}

at::Tensor answer_logits(const Model& model, const at::Tensor& question_states, const at::Tensor& question_ids,
                         const at::Tensor& document_states, const at::Tensor& document_ids, int k) {
  check_split(model, k);
  if (question_states.size(0) != document_states.size(0))
    throw std::invalid_argument("question and document batches differ: " + std::to_string(question_states.size(0)) +
                                " vs " + std::to_string(document_states.size(0)));
  if (is_xlnet(model)) return xlnet_answer_logits(model, question_states, question_ids, document_states, document_ids, k);
  auto hidden = at::cat({question_states, document_states}, 1);
  auto mask = at::cat({question_ids, document_ids}, 1).ne(0).to(at::kLong);
  return qa_logits(model, run_layers(model, hidden, mask, k, model.config().num_layers));
}

at::Tensor full_logits(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                       const at::Tensor& attention_mask) {
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  if (!is_xlnet(model) && length > model.config().max_position_embeddings)
    throw std::invalid_argument("sequence of " + std::to_string(length) + " tokens exceeds the model's " +
                                std::to_string(model.config().max_position_embeddings) + " positions");
  auto positions = at::arange(length, input_ids.options()).unsqueeze(0).expand({batch, length});
  auto hidden = embed(model, input_ids, token_type_ids, positions);
  return qa_logits(model, run_layers(model, hidden, attention_mask, token_type_ids, positions, 0, model.config().num_layers));
}

}  // namespace engine
}  // namespace deformer
