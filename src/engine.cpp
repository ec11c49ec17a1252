#include "deformer/engine.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

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

const native::Bert* native_bert(const Model& model) { return model.impl().bert.get(); }

// Calls of at most this many tokens (rows x length) replay CUDA graphs: below it a call is bound by kernel
// launches (a batch of questions of ~20 tokens through 9 layers is hundreds of small kernels), above it by
// arithmetic.
constexpr int64_t kGraphMaxTokens = 16384;
constexpr int64_t kGraphMaxRows = 256;

cuda_graphs::GraphCache* graphs_for(const Model& model, int64_t rows, int64_t length) {
  return rows <= kGraphMaxRows && rows * length <= kGraphMaxTokens ? model.impl().graphs.get() : nullptr;
}

// Graph shapes: rows rounded up to a power of two up to 16 and to a multiple of 16 above, lengths to a multiple of
// `step` (at most `cap`), so that a few graphs serve every call. Padding rows and padding positions never change
// real outputs (docs/design.md, 'Invariants', 5).
int64_t graph_rows(int64_t rows) {
  if (rows > 16) return (rows + 15) / 16 * 16;
  int64_t r = 1;
  while (r < rows) r *= 2;
  return r;
}
int64_t graph_length(int64_t length, int64_t step, int64_t cap) {
  return std::max(length, std::min(cap, (length + step - 1) / step * step));
}

// Pads dims 0 and 1 of x ([B, T] or [B, T, H]) at their ends to rows x length with `value`.
at::Tensor pad_rows(const at::Tensor& x, int64_t rows, int64_t length, double value) {
  if (x.size(0) == rows && x.size(1) == length) return x;
  std::vector<int64_t> pad(2 * (x.dim() - 2), 0);
  pad.insert(pad.end(), {0, length - x.size(1), 0, rows - x.size(0)});
  return at::constant_pad_nd(x, pad, value);
}

std::string graph_key(const char* what, int k, int64_t rows, int64_t a, int64_t b = 0) {
  return std::string(what) + " k=" + std::to_string(k) + " rows=" + std::to_string(rows) + " " + std::to_string(a) +
         "x" + std::to_string(b);
}

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
  if (const auto* bert = native_bert(model)) {
    c10::InferenceMode guard;
    return bert->embed(input_ids, token_type_ids, position_ids);
  }
  return call(model, "embed", {input_ids, token_type_ids, position_ids});
}

at::Tensor run_layers(const Model& model, const at::Tensor& hidden, const at::Tensor& mask, int begin, int end) {
  if (is_xlnet(model))
    throw std::invalid_argument("XLNet layers need segment and position ids (call run_layers with them)");
  check_split(model, begin);
  check_split(model, end);
  if (begin >= end) return hidden;
  if (const auto* bert = native_bert(model)) {
    c10::InferenceMode guard;
    return bert->encode(hidden, mask, begin, end);
  }
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
  if (const auto* bert = native_bert(model)) {
    c10::InferenceMode guard;
    return bert->qa_logits(hidden).to(at::kFloat);
  }
  return call(model, "qa_logits", {hidden}).to(at::kFloat);
}

namespace {

// encode_block through a graph when the call is small enough; `step` is the length granularity of the graphs.
at::Tensor encode_block_maybe_graph(const Model& model, const at::Tensor& ids, int64_t type, int k, int64_t block,
                                    int64_t step, const char* what) {
  auto* graphs = graphs_for(model, ids.size(0), ids.size(1));
  if (!graphs || k == 0) return encode_block(model, ids, type, k);
  c10::InferenceMode guard;
  const int64_t rows = graph_rows(ids.size(0)), length = graph_length(ids.size(1), step, block);
  auto padded = pad_rows(ids, rows, length, model.config().pad_token_id);
  auto out = graphs->run(graph_key(what, k, rows, length), {padded},
                         [&](const std::vector<at::Tensor>& in) { return encode_block(model, in[0], type, k); });
  return out.narrow(0, 0, ids.size(0)).narrow(1, 0, ids.size(1));
}

}  // namespace

at::Tensor encode_questions(const Model& model, const at::Tensor& question_ids, int k) {
  check_split(model, k);
  check_ids(model, question_ids, model.config().question_block, "question ids");
  return encode_block_maybe_graph(model, question_ids, 0, k, model.config().question_block, 8, "questions");
}

bool can_pack_questions(const Model& model) { return !is_xlnet(model) && native_bert(model) != nullptr; }

at::Tensor encode_packed_questions(const Model& model, const at::Tensor& ids, const at::Tensor& positions,
                                   const at::Tensor& segments, int k) {
  check_split(model, k);
  if (!can_pack_questions(model)) throw std::invalid_argument("packed questions need a BERT model with native layers");
  if (ids.dim() != 2 || positions.sizes() != ids.sizes() || segments.sizes() != ids.sizes())
    throw std::invalid_argument("packed ids, positions and segments must be [rows, length] alike");
  const auto* bert = native_bert(model);
  auto run = [&](const std::vector<at::Tensor>& in) {
    auto hidden = bert->embed(in[0], at::zeros_like(in[0]), in[1]);
    // A query attends to the real keys of its own question.
    const auto& seg = in[2];
    auto allowed = seg.unsqueeze(2).eq(seg.unsqueeze(1)).logical_and(seg.unsqueeze(1).ge(0));
    auto additive = (1.0 - allowed.to(hidden.scalar_type())).mul_(native::Bert::kMaskedScore).unsqueeze(1);
    return bert->encode_additive(hidden, additive, 0, k);
  };
  c10::InferenceMode guard;
  auto* graphs = graphs_for(model, ids.size(0), ids.size(1));
  if (!graphs || k == 0) return run({ids, positions, segments});
  const int64_t rows = graph_rows(ids.size(0));
  auto out = graphs->run(graph_key("packed", k, rows, ids.size(1)),
                         {pad_rows(ids, rows, ids.size(1), model.config().pad_token_id), pad_rows(positions, rows, ids.size(1), 0),
                          pad_rows(segments, rows, ids.size(1), -1)},
                         run);
  return out.narrow(0, 0, ids.size(0));
}

at::Tensor encode_documents(const Model& model, const at::Tensor& document_ids, int k) {
  check_split(model, k);
  check_ids(model, document_ids, model.config().document_block, "document ids");
  return encode_block_maybe_graph(model, document_ids, 1, k, model.config().document_block, 64, "documents");
}

at::Tensor answer_logits(const Model& model, const at::Tensor& question_states, const at::Tensor& question_ids,
                         const at::Tensor& document_states, const at::Tensor& document_ids, int k) {
  check_split(model, k);
  if (question_states.size(0) != document_states.size(0))
    throw std::invalid_argument("question and document batches differ: " + std::to_string(question_states.size(0)) +
                                " vs " + std::to_string(document_states.size(0)));
  if (is_xlnet(model)) return xlnet_answer_logits(model, question_states, question_ids, document_states, document_ids, k);
  auto joint = [&](const std::vector<at::Tensor>& in) {
    auto hidden = at::cat({in[0], in[2]}, 1);
    auto mask = at::cat({in[1], in[3]}, 1).ne(model.config().pad_token_id).to(at::kLong);
    return qa_logits(model, run_layers(model, hidden, mask, k, model.config().num_layers));
  };
  const int64_t batch = question_states.size(0), q_len = question_ids.size(1), d_len = document_ids.size(1);
  auto* graphs = graphs_for(model, batch, q_len + d_len);
  if (!graphs) return joint({question_states, question_ids, document_states, document_ids});
  c10::InferenceMode guard;
  const auto& c = model.config();
  const int64_t rows = graph_rows(batch), q_pad = graph_length(q_len, 8, c.question_block),
                d_pad = graph_length(d_len, 64, c.document_block);
  const double pad = c.pad_token_id;
  auto out = graphs->run(graph_key("joint", k, rows, q_pad, d_pad),
                         {pad_rows(question_states, rows, q_pad, 0), pad_rows(question_ids, rows, q_pad, pad),
                          pad_rows(document_states, rows, d_pad, 0), pad_rows(document_ids, rows, d_pad, pad)},
                         joint);
  return at::cat({out.narrow(0, 0, batch).narrow(1, 0, q_len), out.narrow(0, 0, batch).narrow(1, q_pad, d_len)}, 1);
}

at::Tensor full_logits(const Model& model, const at::Tensor& input_ids, const at::Tensor& token_type_ids,
                       const at::Tensor& attention_mask) {
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  if (!is_xlnet(model) && length > model.config().max_position_embeddings)
    throw std::invalid_argument("sequence of " + std::to_string(length) + " tokens exceeds the model's " +
                                std::to_string(model.config().max_position_embeddings) + " positions");
  auto forward = [&](const std::vector<at::Tensor>& in) {
    const int64_t rows = in[0].size(0), len = in[0].size(1);
    auto positions = at::arange(len, in[0].options()).unsqueeze(0).expand({rows, len});
    auto hidden = embed(model, in[0], in[1], positions);
    return qa_logits(model, run_layers(model, hidden, in[2], in[1], positions, 0, model.config().num_layers));
  };
  auto* graphs = graphs_for(model, batch, length);
  if (!graphs) return forward({input_ids, token_type_ids, attention_mask});
  c10::InferenceMode guard;
  const int64_t rows = graph_rows(batch), padded = graph_length(length, 64, model.config().max_position_embeddings);
  auto out = graphs->run(graph_key("full", 0, rows, padded),
                         {pad_rows(input_ids, rows, padded, model.config().pad_token_id),
                          pad_rows(token_type_ids, rows, padded, 0), pad_rows(attention_mask, rows, padded, 0)},
                         forward);
  return out.narrow(0, 0, batch).narrow(1, 0, length);
}

}  // namespace engine
}  // namespace deformer
