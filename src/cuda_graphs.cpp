#include "cuda_graphs.h"

#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>

#ifdef DEFORMER_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace deformer {
namespace cuda_graphs {

#ifdef DEFORMER_CUDA_GRAPHS

struct Graph {
  std::vector<at::Tensor> inputs;  // static buffers the graph reads
  at::Tensor output;               // static buffer the graph writes
  std::unique_ptr<at::cuda::CUDAGraph> graph;  // null: capture failed, run eagerly
};

struct GraphCache::Impl {
  std::mutex mutex;
  std::map<std::string, Graph> graphs;
  std::optional<decltype(at::cuda::graph_pool_handle())> pool;  // shared by every graph (see the header)
  // Every capture runs on this one stream: cuBLAS keeps a workspace (32 MiB on Hopper) per stream it has seen, so
  // a fresh pool stream per capture held one more workspace per graph.
  std::optional<c10::cuda::CUDAStream> capture_stream;
  // Static inputs are views of one buffer per (input position, dtype), grown when a graph needs more.
  std::map<std::pair<size_t, at::ScalarType>, at::Tensor> input_buffers;
  at::cuda::CUDAEvent last_copy;  // after the last replay's output copy; the next replay waits for it
  bool warned = false;

  at::Tensor static_input(size_t position, const at::Tensor& like) {
    at::Tensor& buffer = input_buffers[{position, like.scalar_type()}];
    const int64_t n = like.numel();
    // Doubling bounds what graphs still holding an outgrown buffer keep alive to the size of the newest one.
    if (!buffer.defined() || buffer.numel() < n)
      buffer = at::empty({std::max<int64_t>(n, buffer.defined() ? 2 * buffer.numel() : 0)}, like.options());
    return buffer.narrow(0, 0, n).view(like.sizes());
  }

  // Warm-up runs on the capture stream (cuBLAS workspaces and lazy initialisation happen outside the capture),
  // then the capture there; the caller's stream waits for all of it.
  void capture(const std::string& key, Graph& g, const std::vector<at::Tensor>& inputs, const Body& body) {
    auto caller = c10::cuda::getCurrentCUDAStream();
    last_copy.block(caller);  // the buffers may still be read by the last replay
    for (size_t i = 0; i < inputs.size(); ++i) g.inputs.push_back(static_input(i, inputs[i]).copy_(inputs[i]));
    if (!capture_stream) capture_stream = c10::cuda::getStreamFromPool();
    auto side = *capture_stream;
    at::cuda::CUDAEvent ready;
    ready.record(caller);
    ready.block(side);
    try {
      c10::cuda::CUDAStreamGuard on_side(side);
      for (int i = 0; i < 2; ++i) body(g.inputs);
      if (!pool) pool = at::cuda::graph_pool_handle();
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      // Thread-local mode: other threads' CUDA calls (allocations) during the capture are not errors.
      graph->capture_begin(*pool, cudaStreamCaptureModeThreadLocal);
      try {
        g.output = body(g.inputs);
      } catch (...) {
        try {
          graph->capture_end();
        } catch (...) {
        }
        throw;
      }
      graph->capture_end();
      g.graph = std::move(graph);
    } catch (const std::exception& e) {
      g.output = at::Tensor();
      if (!warned)
        std::cerr << "deformer: warning: CUDA graph capture of '" << key << "' failed, running it eagerly: "
                  << std::string(e.what()).substr(0, 300) << std::endl;
      warned = true;
    }
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(caller);
  }
};

GraphCache::GraphCache() : impl_(std::make_unique<Impl>()) {}

// A model held in a static variable is destroyed after the CUDA runtime has begun shutting down, and releasing a
// graph's memory pool then throws from a destructor (std::terminate). At that point the process is exiting: the
// graphs are left to the driver.
GraphCache::~GraphCache() {
  // cudaFree(nullptr) reaches the driver (cudaGetDevice may answer from the runtime's own state).
  if (cudaFree(nullptr) != cudaSuccess) {
    (void)cudaGetLastError();
    for (auto& [key, g] : impl_->graphs) (void)g.graph.release();
  }
}

bool GraphCache::available() { return true; }

size_t GraphCache::size() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  size_t n = 0;
  for (const auto& [key, g] : impl_->graphs) n += g.graph != nullptr;
  return n;
}

GraphCache::Held GraphCache::held() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  Held h;
  std::set<const void*> buffers;  // outgrown buffers still count while a graph holds a view of them
  for (const auto& [key, g] : impl_->graphs) {
    for (const auto& x : g.inputs) {
      h.unshared_input_bytes += x.numel() * x.element_size();
      if (buffers.insert(x.storage().data()).second) h.input_bytes += x.storage().nbytes();
    }
    if (g.output.defined()) h.output_bytes += g.output.numel() * g.output.element_size();
  }
  return h;
}

at::Tensor GraphCache::run(const std::string& key, const std::vector<at::Tensor>& inputs, const Body& body) {
  if (inputs.empty() || !inputs.front().is_cuda()) return body(inputs);
  c10::cuda::CUDAGuard device(inputs.front().device());
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto [it, fresh] = impl_->graphs.try_emplace(key);
  Graph& g = it->second;
  if (fresh) impl_->capture(key, g, inputs, body);
  if (!g.graph) return body(inputs);
  if (inputs.size() != g.inputs.size()) throw std::logic_error("CUDA graph '" + key + "' called with another input count");
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].sizes().equals(g.inputs[i].sizes()) || inputs[i].scalar_type() != g.inputs[i].scalar_type())
      throw std::logic_error("CUDA graph '" + key + "' called with inputs of another shape or dtype");
  auto stream = c10::cuda::getCurrentCUDAStream();
  impl_->last_copy.block(stream);
  for (size_t i = 0; i < inputs.size(); ++i) g.inputs[i].copy_(inputs[i], /*non_blocking=*/true);
  g.graph->replay();
  auto out = g.output.clone();
  impl_->last_copy.record(stream);
  return out;
}

#else  // no CUDA graphs in this build

struct GraphCache::Impl {};
GraphCache::GraphCache() : impl_(std::make_unique<Impl>()) {}
GraphCache::~GraphCache() = default;
bool GraphCache::available() { return false; }
size_t GraphCache::size() const { return 0; }
GraphCache::Held GraphCache::held() const { return {}; }
at::Tensor GraphCache::run(const std::string&, const std::vector<at::Tensor>& inputs, const Body& body) { return body(inputs); }

#endif

}  // namespace cuda_graphs
}  // namespace deformer
