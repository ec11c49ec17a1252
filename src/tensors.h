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

// Equal-length rows of ids as an int64 [rows, length] tensor on `device`.
inline at::Tensor rows_to_tensor(const std::vector<std::vector<int64_t>>& rows, const c10::Device& device) {
  const int64_t n = rows.size(), len = rows.front().size();
  auto t = torch::empty({n, len}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) std::copy(rows[i].begin(), rows[i].end(), t[i].data_ptr<int64_t>());
  return t.to(device);
}

}  // namespace deformer
