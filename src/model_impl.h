#pragma once
// Private: what a loaded Model holds. Only translation units that run the network include this.

#include <torch/script.h>

#include "deformer/model.h"

namespace deformer {

struct Model::Impl {
  // Methods of a TorchScript module may run concurrently; the module itself is never mutated after load.
  mutable torch::jit::Module module;
  ModelConfig config;
  LoadOptions options;
  std::string content_hash;
  std::string vocabulary;
  std::string path;
  int64_t parameter_count = 0;
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype = c10::kFloat;
};

}  // namespace deformer
