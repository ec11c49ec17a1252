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

// Positions 0..T-1 for every row, token type `type` everywhere, mask = ids != pad.
at::Tensor encode_block(const Model& model, const at::Tensor& ids, int64_t type, int k) {
  const int64_t batch = ids.size(0), length = ids.size(1);
  auto positions = at::arange(length, ids.options()).unsqueeze(0).expand({batch, length});
  auto types = at::full({batch, length}, type, ids.options());
  auto mask = ids.ne(0).to(at::kLong);
  auto hidden = embed(model, ids, types, positions);
  return run_layers(model, hidden, mask, 0, k);
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
  return call(model, "embed", {input_ids, token_type_ids, position_ids});
}

at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, int begin, int end) {
  check_split(model, begin);
  check_split(model, end);
  if (begin >= end) return hidden;
  return call(model, "encode", {hidden, mask, static_cast<int64_t>(begin), static_cast<int64_t>(end)});
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
  auto hidden = at::cat({question_states, document_states}, 1);
  auto mask = at::cat({question_ids, document_ids}, 1).ne(0).to(at::kLong);
  return qa_logits(model, run_layers(model, hidden, mask, k, model.config().num_layers));
}

at::Tensor full_logits(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                       const at::Tensor& attention_mask) {
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  if (length > model.config().max_position_embeddings)
    throw std::invalid_argument("sequence of " + std::to_string(length) + " tokens exceeds the model's " +
                                std::to_string(model.config().max_position_embeddings) + " positions");
  auto positions = at::arange(length, input_ids.options()).unsqueeze(0).expand({batch, length});
  auto hidden = embed(model, input_ids, token_type_ids, positions);
  return qa_logits(model, run_layers(model, hidden, attention_mask, 0, model.config().num_layers));
}

}  // namespace engine
}  // namespace deformer
