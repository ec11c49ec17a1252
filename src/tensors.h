#pragma once
// Private torch helpers shared by the reader and the cache builder.
#include <torch/script.h>

#include <vector>

#include "deformer/model.h"

namespace deformer {

inline c10::Device device_of(const Model& model) {
  return model.options().device == Device::kCUDA ? c10::Device(c10::kCUDA, model.options().device_index)
                                                 : c10::Device(c10::kCPU);
}

inline c10::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return c10::kHalf;
    case DType::kBFloat16: return c10::kBFloat16;
    default: return c10::kFloat;
  }
}

inline c10::ScalarType dtype_of(const Model& model) { return to_scalar_type(model.options().dtype); }

// A host tensor on `device`; on a GPU through pinned memory without waiting for the copy (LibTorch's pinned
// allocator keeps the host block until the copy has run, so the host tensor may go out of scope).
inline at::Tensor to_device(const at::Tensor& host, const c10::Device& device) {
  if (device.is_cpu()) return host;
  return (host.is_pinned() ? host : host.pin_memory()).to(device, /*non_blocking=*/true);
}

// Equal-length rows of ids as an int64 [rows, length] tensor on `device`.
inline at::Tensor rows_to_tensor(const std::vector<std::vector<int64_t>>& rows, const c10::Device& device) {
  const int64_t n = rows.size(), len = rows.front().size();
  auto t = torch::empty({n, len}, torch::TensorOptions(torch::kLong).pinned_memory(!device.is_cpu()));
  for (int64_t i = 0; i < n; ++i) std::copy(rows[i].begin(), rows[i].end(), t.data_ptr<int64_t>() + i * len);
  return to_device(t, device);
}

// int64 values as a 1-d tensor on `device`.
inline at::Tensor indices_on(const std::vector<int64_t>& values, const c10::Device& device) {
  auto t = torch::empty({static_cast<int64_t>(values.size())}, torch::TensorOptions(torch::kLong).pinned_memory(!device.is_cpu()));
  std::copy(values.begin(), values.end(), t.data_ptr<int64_t>());
  return to_device(t, device);
}

}  // namespace deformer
