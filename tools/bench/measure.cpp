// What a child measures with besides the clock: LibTorch's device (synchronising, CUDA memory, FLOP rates of the
// upper layers and of a plain matmul), the process's memory, and the statistics. The only file of deformer-bench that
// includes LibTorch.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>
#ifdef DEFORMER_CUDA_STATS  // a LibTorch with CUDA (CMake found c10_cuda)
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#ifdef DEFORMER_MALLOC_HOOKS
#include <gperftools/malloc_hook_c.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>

#include "bench.h"
#include "deformer/engine.h"

namespace deformer::bench {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

double seconds_since(Clock::time_point begin) { return std::chrono::duration<double>(Clock::now() - begin).count(); }

int64_t proc_status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::string(field).size())) * 1024;
  return -1;
}

double layer_flops(double tokens, const ModelConfig& c) {
  const double h = c.hidden_size, f = c.intermediate_size;
  return 2 * tokens * (4 * h * h + 2 * h * f) + 4 * tokens * tokens * h;
}

LoadOptions load_options(const BenchArgs& args) {
  LoadOptions o;
  std::string device = args.model.device;
  if (device.rfind("cuda:", 0) == 0) {
    o.device_index = std::stoi(device.substr(5));
    device = "cuda";
  }
  o.device = parse_device(device);
  // int8 is a property of the model file (deformer-export --quantize int8), computed in fp32 on the CPU.
  o.dtype = args.model.dtype == "int8" ? DType::kFloat32 : parse_dtype(args.model.dtype);
  o.threads = cli::thread_count(args.model.threads);
  return o;
}

void synchronize(const Model& model) {
  if (model.options().device == Device::kCUDA) torch::cuda::synchronize(model.options().device_index);
}

void reset_cuda_peak(const Model& model) {
#ifdef DEFORMER_CUDA_STATS
  if (model.options().device == Device::kCUDA)
    c10::cuda::CUDACachingAllocator::resetPeakStats(model.options().device_index);
#else
  (void)model;
#endif
}

// LibTorch's CUDA allocator (aggregate pool), peak and current; -1 without CUDA.
CudaMemory cuda_memory(const Model& model) {
#ifdef DEFORMER_CUDA_STATS
  if (model.options().device == Device::kCUDA) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(model.options().device_index);
    return {stats.allocated_bytes[0].peak, stats.allocated_bytes[0].current, stats.reserved_bytes[0].peak,
            stats.reserved_bytes[0].current, stats.allocated_bytes[0].allocated};
  }
#else
  (void)model;
#endif
  return {};
}

int64_t cuda_bytes_requested(const Model& model, const std::function<void()>& run) {
  const int64_t before = cuda_memory(model).allocated_total;
  if (before < 0) return -1;
  run();
  return cuda_memory(model).allocated_total - before;
}

#ifdef DEFORMER_MALLOC_HOOKS  // tcmalloc's allocation hook (tools/CMakeLists.txt)
namespace {
std::atomic<bool> counting_allocations{false};
std::atomic<int64_t> allocated_while_counting{0};
void count_allocation(const void*, size_t size) {
  if (counting_allocations.load(std::memory_order_relaxed)) allocated_while_counting.fetch_add(size, std::memory_order_relaxed);
}
}  // namespace
#endif

int64_t host_bytes_requested(const std::function<void()>& run) {
#ifdef DEFORMER_MALLOC_HOOKS
  static const bool hooked = MallocHook_AddNewHook(&count_allocation) != 0;
  if (!hooked) return -1;
  allocated_while_counting = 0;
  counting_allocations = true;
  run();
  counting_allocations = false;
  return allocated_while_counting.load();
#else
  (void)run;
  return -1;
#endif
}

json upper_layer_rate(const Model& model, int k, int batch) {
  const auto& c = model.config();
  const int64_t tokens = c.question_block + c.document_block;
  const c10::Device device = model.options().device == Device::kCUDA ? c10::Device(c10::kCUDA, model.options().device_index)
                                                                     : c10::Device(c10::kCPU);
  c10::InferenceMode guard;
  const auto dtype = model.options().dtype == DType::kFloat16 ? at::kHalf
                     : model.options().dtype == DType::kBFloat16 ? at::kBFloat16 : at::kFloat;
  auto hidden = torch::randn({batch, tokens, c.hidden_size}, torch::TensorOptions(dtype).device(device));
  auto mask = torch::ones({batch, tokens}, torch::TensorOptions(torch::kLong).device(device));
  // XLNet's relative attention takes segments and positions (BERT ignores them here).
  auto segments = torch::zeros_like(mask);
  auto positions = torch::arange(tokens, mask.options()).unsqueeze(0).expand({batch, tokens});
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    synchronize(model);
    const auto begin = Clock::now();
    auto out = engine::run_layers(model, hidden, mask, segments, positions, k, c.num_layers);
    synchronize(model);
    if (i >= 2) times.push_back(seconds_since(begin));
  }
  const double flops = double(batch) * (c.num_layers - k) * layer_flops(tokens, c);
  const double t = median(times);
  return {{"batch", batch}, {"tokens", tokens}, {"layers", c.num_layers - k}, {"median_ms", t * 1e3},
          {"tflop_s", flops / t / 1e12}};
}

json matmul_peak(const Model& model) {
  const bool gpu = model.options().device == Device::kCUDA;
  const int64_t n = gpu ? 8192 : 1024;
  const c10::Device device = gpu ? c10::Device(c10::kCUDA, model.options().device_index) : c10::Device(c10::kCPU);
  const auto dtype = model.options().dtype == DType::kFloat16 ? at::kHalf
                     : model.options().dtype == DType::kBFloat16 ? at::kBFloat16 : at::kFloat;
  c10::InferenceMode guard;
  auto a = torch::randn({n, n}, torch::TensorOptions(dtype).device(device));
  auto b = torch::randn({n, n}, torch::TensorOptions(dtype).device(device));
  std::vector<double> times;
  for (int i = 0; i < 8; ++i) {
    synchronize(model);
    const auto begin = Clock::now();
    auto c = at::mm(a, b);
    synchronize(model);
    if (i >= 3) times.push_back(seconds_since(begin));
  }
  return {{"n", n}, {"tflop_s", 2.0 * n * n * n / median(times) / 1e12}};
}

int64_t cuda_device_count() { return torch::cuda::device_count(); }
int compute_threads() { return at::get_num_threads(); }
void check_split(const Model& model, int k) { engine::check_split(model, k); }

}  // namespace deformer::bench
