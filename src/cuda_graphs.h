#pragma once
// Private: captured CUDA graphs for the engine's small-batch calls. One question over a few windows is bound by
// kernel launches (hundreds of small kernels), so the engine runs such calls, padded to a few fixed shapes, as
// one graph launch each (docs/design.md, 'CPU and GPU').
//
// Thread safety: run() may be called from several threads at once. Captures and replays are serialised by one
// mutex, and each replay is ordered after the previous one's output copy, whatever stream the callers use; this
// is what lets every graph share one memory pool (a graph's intermediates are free while no replay runs) and one
// set of static input buffers (a graph's inputs are copied in just before its replay).

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace deformer {
namespace cuda_graphs {

using Body = std::function<at::Tensor(const std::vector<at::Tensor>&)>;

class GraphCache {
 public:
  GraphCache();
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // body(inputs), through a graph captured the first time `key` is seen and replayed after that. The key must
  // name everything the result depends on besides the inputs' values: their shapes included. body must be
  // free of host synchronisation. Inputs are CUDA tensors on one device; the result is a fresh tensor. When a
  // capture fails, the key runs eagerly from then on (with one warning on stderr); a build without CUDA graphs
  // always runs body(inputs).
  at::Tensor run(const std::string& key, const std::vector<at::Tensor>& inputs, const Body& body);

  // Graphs captured so far (for tests and benchmarks).
  size_t size() const;

  // Device bytes the graphs hold between calls, besides their shared memory pool.
  struct Held {
    int64_t input_bytes = 0;           // the static input buffers, shared by every graph
    int64_t unshared_input_bytes = 0;  // what they would take with a buffer per graph and input
    int64_t output_bytes = 0;          // the static outputs, one per graph
  };
  Held held() const;

  // True when this build can capture graphs (LibTorch with CUDA and the CUDA headers at build time).
  static bool available();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda_graphs
}  // namespace deformer
