#pragma once
// Private: BERT's embeddings, encoder layers and QA head as direct ATen calls on the model file's weights.
//
// The model file's TorchScript methods (tools/pydeformer/bert.py) are the contract and the reference; this is the
// same network without the interpreter: query, key and value as one fused matrix product, and fused attention
// (scaled_dot_product_attention) where LibTorch has it (2.x), so that a GPU runs a few large kernels per layer.
// Numerics are the reference's: erf GELU unless the config says tanh or relu, post-LayerNorm, the additive
// key mask of MASKED_SCORE.

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "deformer/model.h"

namespace deformer {
namespace native {

// LayerNorm(sum + residual) over the last dimension. On CUDA in fp16/bf16 one fused kernel (src/fused_kernels.cu)
// where the build has it; otherwise `sum` receives the sum and ATen normalises it.
at::Tensor add_layer_norm(at::Tensor sum, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias,
                          double eps);
// True when this build has the fused CUDA kernels.
bool fused_kernels_built();

class Bert {
 public:
  // `parameters` are the module's named parameters (bert.py's names) on the model's device and dtype. Throws
  // std::runtime_error naming a missing or misshapen parameter.
  Bert(const std::map<std::string, at::Tensor>& parameters, const ModelConfig& config);

  // Each layer's query, key and value weights and biases as views of the fused matrices, under bert.py's names:
  // the loader puts them back into the module so that the weights are held once.
  std::map<std::string, at::Tensor> fused_views() const;

  at::Tensor embed(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids) const;
  // Layers [begin, end) on hidden [B, T, H]; mask [B, T] is nonzero for real keys.
  at::Tensor encode(const at::Tensor& hidden, const at::Tensor& mask, int begin, int end) const;
  // The same with the additive attention mask given: [B, 1, 1, T] or [B, 1, T, T] in hidden's dtype, 0 where a
  // query may attend to a key and MASKED_SCORE where not.
  at::Tensor encode_additive(const at::Tensor& hidden, const at::Tensor& additive_mask, int begin, int end) const;
  // bert.py's MASKED_SCORE: exp(-1e4) is exactly 0 in fp32 and finite in fp16 and bf16, so a row whose keys are
  // all masked (a batch filler) still gives finite, unused outputs.
  static constexpr double kMaskedScore = -10000.0;
  // [B, T, 2] in the compute dtype.
  at::Tensor qa_logits(const at::Tensor& hidden) const;

 private:
  struct Layer {
    at::Tensor qkv_weight, qkv_bias;  // [3H, H], [3H]: query, key, value stacked
    at::Tensor output_weight, output_bias, attention_norm_weight, attention_norm_bias;
    at::Tensor intermediate_weight, intermediate_bias, ff_output_weight, ff_output_bias, output_norm_weight,
        output_norm_bias;
  };
  at::Tensor layer(const Layer& l, const at::Tensor& x, const at::Tensor& additive_mask) const;

  at::Tensor word_, position_, token_type_, embedding_norm_weight_, embedding_norm_bias_;
  std::vector<Layer> layers_;
  at::Tensor qa_weight_, qa_bias_;
  int64_t hidden_ = 0, heads_ = 0;
  double eps_ = 1e-12;
  int activation_ = 0;  // bert.py's ACTIVATIONS: 0 erf GELU, 1 tanh GELU, 2 ReLU
};

}  // namespace native
}  // namespace deformer
