#pragma once
// Private: hand-written CUDA kernels for what ATen runs as several memory-bound passes (src/fused_kernels.cu,
// built only with a CUDA compiler; DEFORMER_CUDA_KERNELS is defined where it is). Plain pointers, no torch types.
#include <cstdint>

namespace deformer {
namespace kernels {

// True when add_layer_norm handles rows of `hidden` values (a multiple of 256, at most 1024).
bool add_layer_norm_supported(int hidden);

// out = LayerNorm(x + residual) * weight + bias over rows x hidden contiguous fp16 (or bf16) values on the device,
// queued on `stream` (a cudaStream_t). The sum is rounded to the storage dtype first and the statistics are float32,
// as ATen's add then layer_norm compute them. Returns false, launching nothing, for an unsupported hidden size, and
// false when the launch fails.
bool add_layer_norm(const void* x, const void* residual, const void* weight, const void* bias, void* out, int64_t rows,
                    int hidden, float eps, bool bfloat16, void* stream);

}  // namespace kernels
}  // namespace deformer
