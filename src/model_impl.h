#pragma once
// Private: what a loaded Model holds. Only translation units that run the network include this.

#include <torch/script.h>

#include "cuda_graphs.h"
#include "deformer/model.h"
#include "native_bert.h"

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
  std::unique_ptr<native::Bert> bert;                  // set when BERT runs natively (LoadOptions::native_layers)
  std::unique_ptr<cuda_graphs::GraphCache> graphs;     // set on CUDA with LoadOptions::cuda_graphs
};

}  // namespace deformer
