// Question-time cost of full mode vs deformer mode (docs/design.md, 'Performance model') with Google Benchmark.
// DEFORMER_BENCH_MODEL names the model (scripts/make-bench-model.sh writes a BERT-base-shaped random one);
// DEFORMER_BENCH_DEVICE=cuda and DEFORMER_BENCH_DTYPE=fp16|bf16 select device and dtype. Each benchmark
// reports per-window time: full mode runs all layers on [CLS] q [SEP] d [SEP] (320 tokens), deformer mode runs
// the question's lower layers once per batch (one question over `batch` windows) plus the upper layers, with
// the documents' layer-k states already in memory (as after a cache read). The `engine` argument runs the same
// weights side by side: 0 = the model file's TorchScript methods, 1 = native ATen layers (fused attention),
// 2 = native layers with CUDA graphs for small batches (CUDA only).
#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "deformer/engine.h"
#include "deformer/model.h"

namespace {

using deformer::Model;

std::shared_ptr<const Model> load_bench_model(int engine) {
  const char* path = std::getenv("DEFORMER_BENCH_MODEL");
  if (!path) {
    std::cerr << "set DEFORMER_BENCH_MODEL to a model file (scripts/make-bench-model.sh)" << std::endl;
    std::exit(2);
  }
  deformer::LoadOptions options;
  if (const char* d = std::getenv("DEFORMER_BENCH_DEVICE")) options.device = deformer::parse_device(d);
  if (const char* t = std::getenv("DEFORMER_BENCH_DTYPE")) options.dtype = deformer::parse_dtype(t);
  options.native_layers = engine >= 1;
  options.cuda_graphs = engine == 2;
  return Model::load(path, options);
}

// One model per engine variant, loaded on first use and released before main returns (a CUDA model outliving main
// would be destroyed after the CUDA runtime).
std::shared_ptr<const Model> models[3];

// nullptr where the variant does not apply (graphs on a CPU).
std::shared_ptr<const Model> bench_model(int engine) {
  static const bool cuda = [] {
    const char* d = std::getenv("DEFORMER_BENCH_DEVICE");
    return d && std::string(d) == "cuda";
  }();
  if (engine == 2 && !cuda) return nullptr;
  if (!models[engine]) models[engine] = load_bench_model(engine);
  return models[engine];
}

c10::Device device_of(const Model& m) {
  return m.options().device == deformer::Device::kCUDA ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
}

void sync(const Model& m) {
  if (m.options().device == deformer::Device::kCUDA) torch::cuda::synchronize();
}

// Random ids in the ordinary-token range with `real` tokens then padding.
at::Tensor ids(int64_t batch, int64_t length, int64_t real, const Model& m) {
  auto t = torch::randint(1000, m.config().vocab_size, {batch, length}, torch::kLong);
  t.slice(1, real).zero_();
  return t.to(device_of(m));
}

void set_counters(benchmark::State& state, int64_t batch) {
  state.counters["windows/s"] = benchmark::Counter(double(batch) * state.iterations(), benchmark::Counter::kIsRate);
}

void BM_Full(benchmark::State& state) {
  auto m = bench_model(state.range(1));
  if (!m) return state.SkipWithError("CUDA graphs need DEFORMER_BENCH_DEVICE=cuda");
  const int64_t batch = state.range(0), length = m->config().question_block + m->config().document_block;
  auto input = ids(batch, length, length, *m);
  auto types = torch::cat({torch::zeros({batch, int64_t(m->config().question_block)}, torch::kLong),
                           torch::ones({batch, int64_t(m->config().document_block)}, torch::kLong)}, 1).to(device_of(*m));
  auto mask = input.ne(0).to(torch::kLong);
  for (auto _ : state) {
    benchmark::DoNotOptimize(deformer::engine::full_logits(*m, input, types, mask));
    sync(*m);
  }
  set_counters(state, batch);
}

void BM_Deformer(benchmark::State& state) {
  auto m = bench_model(state.range(2));
  if (!m) return state.SkipWithError("CUDA graphs need DEFORMER_BENCH_DEVICE=cuda");
  const int64_t batch = state.range(0);
  const int k = state.range(1);
  const auto& c = m->config();
  auto question = ids(1, c.question_block, c.question_block, *m);
  auto documents = ids(batch, c.document_block, c.document_block, *m);
  auto cached = deformer::engine::encode_documents(*m, documents, k);  // the offline half
  for (auto _ : state) {
    auto q = deformer::engine::encode_questions(*m, question, k);       // once per question
    auto logits = deformer::engine::answer_logits(*m, q.expand({batch, -1, -1}), question.expand({batch, -1}),
                                                  cached, documents, k);
    benchmark::DoNotOptimize(logits);
    sync(*m);
  }
  set_counters(state, batch);
}

// Model::load of DEFORMER_BENCH_MODEL with and without recomputing its weights checksum (the argument: 1 verifies):
// what verification adds to every tool's start.
void BM_ModelLoad(benchmark::State& state) {
  const char* path = std::getenv("DEFORMER_BENCH_MODEL");
  if (!path) return state.SkipWithError("set DEFORMER_BENCH_MODEL");
  deformer::LoadOptions options;
  if (const char* d = std::getenv("DEFORMER_BENCH_DEVICE")) options.device = deformer::parse_device(d);
  options.verify_weights = state.range(0) != 0;
  for (auto _ : state) benchmark::DoNotOptimize(Model::load(path, options));
  state.SetLabel(options.verify_weights ? "verified" : "unverified");
}
BENCHMARK(BM_ModelLoad)->ArgName("verify")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// Batches 32 and 256 are for GPUs (select with --benchmark_filter on a CPU).
BENCHMARK(BM_Full)
    ->ArgNames({"batch", "engine"})
    ->ArgsProduct({{1, 8, 32, 256}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Deformer)
    ->ArgNames({"batch", "k", "engine"})
    ->ArgsProduct({{1, 8, 32, 256}, {9}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto& m : models) m.reset();
  return 0;
}
