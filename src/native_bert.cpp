#include "native_bert.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#ifdef DEFORMER_CUDA_KERNELS
#include <c10/cuda/CUDAStream.h>

#include "fused_kernels.h"
#endif

namespace deformer {
namespace native {
namespace {


const at::Tensor& get(const std::map<std::string, at::Tensor>& parameters, const std::string& name) {
  auto it = parameters.find(name);
  if (it == parameters.end()) throw std::runtime_error("model file lacks the parameter '" + name + "'");
  return it->second;
}

int activation_code(const std::string& hidden_act) {
  if (hidden_act == "gelu") return 0;
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return 1;
  if (hidden_act == "relu") return 2;
  throw std::runtime_error("unsupported hidden_act '" + hidden_act + "'");
}

#ifdef DEFORMER_CUDA_KERNELS
bool fusable(const at::Tensor& t, at::ScalarType dtype) {
  return t.is_cuda() && t.scalar_type() == dtype && t.is_contiguous() && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}
#endif

}  // namespace

at::Tensor add_layer_norm(at::Tensor sum, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias,
                          double eps) {
#ifdef DEFORMER_CUDA_KERNELS
  const auto dtype = sum.scalar_type();
  const int hidden = static_cast<int>(sum.size(-1));
  if ((dtype == at::kHalf || dtype == at::kBFloat16) && kernels::add_layer_norm_supported(hidden) && fusable(sum, dtype) &&
      fusable(residual, dtype) && fusable(weight, dtype) && fusable(bias, dtype) && residual.sizes() == sum.sizes() &&
      weight.numel() == hidden && bias.numel() == hidden) {
    auto out = at::empty_like(sum);
    if (kernels::add_layer_norm(sum.data_ptr(), residual.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(),
                                sum.numel() / hidden, hidden, static_cast<float>(eps), dtype == at::kBFloat16,
                                c10::cuda::getCurrentCUDAStream(sum.device().index()).stream()))
      return out;
  }
#endif
  return at::layer_norm(sum.add_(residual), {sum.size(-1)}, weight, bias, eps);
}

bool fused_kernels_built() {
#ifdef DEFORMER_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

Bert::Bert(const std::map<std::string, at::Tensor>& p, const ModelConfig& config)
    : hidden_(config.hidden_size), heads_(config.num_heads), eps_(config.layer_norm_eps),
      activation_(activation_code(config.hidden_act)) {
  word_ = get(p, "embeddings.word.weight");
  position_ = get(p, "embeddings.position.weight");
  token_type_ = get(p, "embeddings.token_type.weight");
  embedding_norm_weight_ = get(p, "embeddings.norm.weight");
  embedding_norm_bias_ = get(p, "embeddings.norm.bias");
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string prefix = "layers." + std::to_string(i) + ".";
    auto w = [&](const std::string& name) { return get(p, prefix + name); };
    Layer l;
    l.qkv_weight = at::cat({w("query.weight"), w("key.weight"), w("value.weight")}).contiguous();
    l.qkv_bias = at::cat({w("query.bias"), w("key.bias"), w("value.bias")}).contiguous();
    if (l.qkv_weight.size(0) != 3 * hidden_ || l.qkv_weight.size(1) != hidden_)
      throw std::runtime_error("model file: layer " + std::to_string(i) + " query/key/value are not [" +
                               std::to_string(hidden_) + ", " + std::to_string(hidden_) + "]");
    l.output_weight = w("attention_output.weight");
    l.output_bias = w("attention_output.bias");
    l.attention_norm_weight = w("attention_norm.weight");
    l.attention_norm_bias = w("attention_norm.bias");
    l.intermediate_weight = w("intermediate.weight");
    l.intermediate_bias = w("intermediate.bias");
    l.ff_output_weight = w("output.weight");
    l.ff_output_bias = w("output.bias");
    l.output_norm_weight = w("output_norm.weight");
    l.output_norm_bias = w("output_norm.bias");
    layers_.push_back(std::move(l));
  }
  qa_weight_ = get(p, "qa_outputs.weight");
  qa_bias_ = get(p, "qa_outputs.bias");
}

std::map<std::string, at::Tensor> Bert::fused_views() const {
  std::map<std::string, at::Tensor> views;
  const char* names[] = {"query", "key", "value"};
  for (size_t i = 0; i < layers_.size(); ++i)
    for (int part = 0; part < 3; ++part) {
      const std::string prefix = "layers." + std::to_string(i) + "." + names[part] + ".";
      views[prefix + "weight"] = layers_[i].qkv_weight.narrow(0, part * hidden_, hidden_);
      views[prefix + "bias"] = layers_[i].qkv_bias.narrow(0, part * hidden_, hidden_);
    }
  return views;
}

at::Tensor Bert::embed(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids) const {
  auto x = at::embedding(word_, input_ids);
  x.add_(at::embedding(token_type_, token_type_ids)).add_(at::embedding(position_, position_ids));
  return at::layer_norm(x, {hidden_}, embedding_norm_weight_, embedding_norm_bias_, eps_);
}

at::Tensor Bert::layer(const Layer& l, const at::Tensor& x, const at::Tensor& additive_mask) const {
  const int64_t batch = x.size(0), length = x.size(1), head_dim = hidden_ / heads_;
  // [B, T, 3H] -> three [B, heads, T, head_dim] views.
  auto qkv = at::linear(x, l.qkv_weight, l.qkv_bias).view({batch, length, 3, heads_, head_dim}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];
#if TORCH_VERSION_MAJOR >= 2
  auto context = at::scaled_dot_product_attention(q, k, v, additive_mask);
#else
  auto scores = at::matmul(q, k.transpose(-1, -2)).mul_(1.0 / std::sqrt(static_cast<double>(head_dim)));
  auto context = at::matmul(at::softmax(scores.add_(additive_mask), -1), v);
#endif
  context = context.transpose(1, 2).reshape({batch, length, hidden_});
  auto attended = at::linear(context, l.output_weight, l.output_bias);
  auto y = add_layer_norm(attended, x, l.attention_norm_weight, l.attention_norm_bias, eps_);
  auto h = at::linear(y, l.intermediate_weight, l.intermediate_bias);
  if (activation_ == 0) h = at::gelu(h);
  else if (activation_ == 1) h = at::gelu(h, "tanh");
  else h = at::relu(h);
  auto out = at::linear(h, l.ff_output_weight, l.ff_output_bias);
  return add_layer_norm(out, y, l.output_norm_weight, l.output_norm_bias, eps_);
}

at::Tensor Bert::encode(const at::Tensor& hidden, const at::Tensor& mask, int begin, int end) const {
  if (begin >= end) return hidden;
  // [B, 1, 1, T]: 0 for real keys, MASKED_SCORE for padding, in the compute dtype (as bert.py's encode).
  auto additive = (1.0 - mask.to(hidden.scalar_type())).mul_(kMaskedScore).view({mask.size(0), 1, 1, mask.size(1)});
  return encode_additive(hidden, additive, begin, end);
}

at::Tensor Bert::encode_additive(const at::Tensor& hidden, const at::Tensor& additive_mask, int begin, int end) const {
  auto x = hidden;
  for (int i = begin; i < end; ++i) x = layer(layers_[i], x, additive_mask);
  return x;
}

at::Tensor Bert::qa_logits(const at::Tensor& hidden) const { return at::linear(hidden, qa_weight_, qa_bias_); }

}  // namespace native
}  // namespace deformer
