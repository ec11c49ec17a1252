// Private: LayerNorm(x + residual) as one CUDA kernel (src/fused_kernels.h). Compiled only where CMake finds a
// CUDA compiler and LibTorch has CUDA; no torch headers here, so nvcc compiles plain CUDA.
#include "fused_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace deformer {
namespace kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;  // one warp per row
constexpr int kVector = 8;        // 16-byte loads of 8 halves

template <typename T>
struct Convert;
template <>
struct Convert<__half> {
  __device__ static float to_float(__half v) { return __half2float(v); }
  __device__ static __half from_float(float v) { return __float2half_rn(v); }
};
template <>
struct Convert<__nv_bfloat16> {
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};

__device__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;
}

struct alignas(16) Pack {
  uint16_t v[kVector];
};

// kChunks: 16-byte chunks per lane, hidden = kChunks * 8 * 32. The sum is rounded to the storage dtype before the
// statistics, as an add followed by layer_norm rounds it; statistics and the affine transform in float32, as
// ATen's layer_norm computes them for 16-bit inputs.
template <typename T, int kChunks>
__global__ void add_layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ residual, const T* __restrict__ weight,
                                      const T* __restrict__ bias, T* __restrict__ out, int64_t rows, float eps) {
  constexpr int hidden = kChunks * kVector * kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;
  const Pack* xr = reinterpret_cast<const Pack*>(x + row * hidden);
  const Pack* rr = reinterpret_cast<const Pack*>(residual + row * hidden);
  float v[kChunks][kVector];
  float sum = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const Pack a = xr[c * kWarp + lane], b = rr[c * kWarp + lane];
#pragma unroll
    for (int i = 0; i < kVector; ++i) {
      const float s = Convert<T>::to_float(reinterpret_cast<const T&>(a.v[i])) + Convert<T>::to_float(reinterpret_cast<const T&>(b.v[i]));
      v[c][i] = Convert<T>::to_float(Convert<T>::from_float(s));
      sum += v[c][i];
    }
  }
  const float mean = warp_sum(sum) / hidden;
  float squares = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int i = 0; i < kVector; ++i) {
      const float d = v[c][i] - mean;
      squares += d * d;
    }
  const float rstd = rsqrtf(warp_sum(squares) / hidden + eps);
  const Pack* wr = reinterpret_cast<const Pack*>(weight);
  const Pack* br = reinterpret_cast<const Pack*>(bias);
  Pack* outr = reinterpret_cast<Pack*>(out + row * hidden);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const Pack w = wr[c * kWarp + lane], b = br[c * kWarp + lane];
    Pack o;
#pragma unroll
    for (int i = 0; i < kVector; ++i) {
      const float y = (v[c][i] - mean) * rstd * Convert<T>::to_float(reinterpret_cast<const T&>(w.v[i])) +
                      Convert<T>::to_float(reinterpret_cast<const T&>(b.v[i]));
      const T t = Convert<T>::from_float(y);
      o.v[i] = reinterpret_cast<const uint16_t&>(t);
    }
    outr[c * kWarp + lane] = o;
  }
}

template <typename T>
bool launch(const void* x, const void* residual, const void* weight, const void* bias, void* out, int64_t rows,
            int hidden, float eps, cudaStream_t stream) {
  const dim3 block(kWarp * kRowsPerBlock), grid(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  const auto* a = static_cast<const T*>(x);
  const auto* b = static_cast<const T*>(residual);
  const auto* w = static_cast<const T*>(weight);
  const auto* c = static_cast<const T*>(bias);
  auto* o = static_cast<T*>(out);
  switch (hidden / (kVector * kWarp)) {
    case 1: add_layer_norm_kernel<T, 1><<<grid, block, 0, stream>>>(a, b, w, c, o, rows, eps); break;
    case 2: add_layer_norm_kernel<T, 2><<<grid, block, 0, stream>>>(a, b, w, c, o, rows, eps); break;
    case 3: add_layer_norm_kernel<T, 3><<<grid, block, 0, stream>>>(a, b, w, c, o, rows, eps); break;
    case 4: add_layer_norm_kernel<T, 4><<<grid, block, 0, stream>>>(a, b, w, c, o, rows, eps); break;
    default: return false;
  }
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

bool add_layer_norm_supported(int hidden) {
  return hidden % (kVector * kWarp) == 0 && hidden / (kVector * kWarp) >= 1 && hidden / (kVector * kWarp) <= 4;
}

bool add_layer_norm(const void* x, const void* residual, const void* weight, const void* bias, void* out, int64_t rows,
                    int hidden, float eps, bool bfloat16, void* stream) {
  if (!add_layer_norm_supported(hidden) || rows <= 0) return false;
  auto s = static_cast<cudaStream_t>(stream);
  return bfloat16 ? launch<__nv_bfloat16>(x, residual, weight, bias, out, rows, hidden, eps, s)
                  : launch<__half>(x, residual, weight, bias, out, rows, hidden, eps, s);
}

}  // namespace kernels
}  // namespace deformer
