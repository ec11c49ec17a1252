// Document cache throughput at BERT-base shapes (hidden 768, document block 293): cost of reading one
// window back from the page cache per storage dtype, with and without gzip, write rate, and bytes per
// window. States are N(0, 1) floats, close to LayerNorm outputs; real layer-k states are no more
// compressible in our measurements (see the cache report).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "deformer/cache.h"

namespace {

namespace fs = std::filesystem;
using namespace deformer::cache;

constexpr int kHidden = 768, kBlock = 293, kStride = 128, kWindows = 48;

CacheMetadata metadata(StateDType dtype) {
  CacheMetadata m;
  m.model_hash = "bench";
  m.k = 9;
  m.hidden_size = kHidden;
  m.document_block = kBlock;
  m.window_stride = kStride;
  m.state_dtype = dtype;
  m.tokenizer_hash = "bench";
  return m;
}

const std::vector<float>& states() {
  static const std::vector<float> values = [] {
    std::vector<float> v(static_cast<size_t>(kWindows) * kBlock * kHidden);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& x : v) x = normal(rng);
    return v;
  }();
  return values;
}

fs::path bench_dir() {
  static const fs::path dir = [] {
    auto d = fs::temp_directory_path() / ("deformer-cache-bench-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// One document per window; rows vary from 150 to 293 (last windows of documents are short), so windows
// start anywhere within the 293-row chunks, as in a real cache.
int rows_of(int w) { return w % 3 == 2 ? 150 + (w * 97) % 143 : kBlock; }

void write(const std::string& path, StateDType dtype, int gzip, int windows) {
  auto writer = CacheWriter::create(path, metadata(dtype), {0, gzip, true});
  std::vector<deformer::cache::CharSpan> offsets(kBlock - 1);
  for (int t = 0; t < kBlock - 1; ++t) offsets[t] = {t, t + 1};
  const std::string text(kBlock - 1, 'x');
  for (int w = 0; w < windows; ++w) {
    const float* rows = states().data() + static_cast<size_t>(w % kWindows) * kBlock * kHidden;
    const int n = rows_of(w);
    writer->add_document("d" + std::to_string(w), text, offsets, {{{0, n - 1}, n, rows}});
  }
  writer->commit();
}

std::string cached_file(StateDType dtype, int gzip) {
  static std::map<std::pair<int, int>, std::string> files;
  auto& path = files[{static_cast<int>(dtype), gzip}];
  if (path.empty()) {
    path = (bench_dir() / (std::string(to_string(dtype)) + "-gz" + std::to_string(gzip) + ".h5")).string();
    write(path, dtype, gzip, kWindows);
  }
  return path;
}

// Arguments: dtype (0 fp32, 1 fp16, 2 bf16, 3 int8), gzip level, windows per read_windows call.
void BM_ReadWindows(benchmark::State& state) {
  const auto dtype = static_cast<StateDType>(state.range(0));
  const int gzip = static_cast<int>(state.range(1)), batch = static_cast<int>(state.range(2));
  const auto path = cached_file(dtype, gzip);
  auto reader = CacheReader::open(path);
  std::vector<float> out(static_cast<size_t>(batch) * reader->window_floats());
  std::mt19937 rng(3);
  std::vector<int64_t> request(batch);
  for (auto _ : state) {
    for (auto& w : request) w = rng() % kWindows;
    reader->read_windows(request, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["bytes/window"] = static_cast<double>(fs::file_size(path)) / kWindows;
  state.counters["us/window"] = benchmark::Counter(static_cast<double>(state.iterations()) * batch,
                                                   benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(std::string(to_string(dtype)) + (gzip ? " gzip" + std::to_string(gzip) + "+shuffle" : " raw"));
}

// The question path's read (src/reader.cpp): a batch of windows of a SQuAD-like cache, 161 real rows each (the
// mean window of deformer-bench's SQuAD dev workload at BERT-base), into one [batch, 161, hidden] buffer. fp16 as stored
// (read_windows_16bit, a GPU computing in fp16) or converted to float; fp32 as is. Windows are drawn at random
// from kQuestionWindows (~125 MiB of fp16, ~250 MiB of fp32: all in the page cache, as on a warm server).
// Wall-clock time: the reader may use threads of its own, whose CPU time the benchmark does not see.
constexpr int kQuestionRows = 161, kQuestionWindows = 512;

std::string question_file(StateDType dtype) {
  static std::map<int, std::string> files;
  auto& path = files[static_cast<int>(dtype)];
  if (path.empty()) {
    path = (bench_dir() / ("question-" + std::string(to_string(dtype)) + ".h5")).string();
    auto writer = CacheWriter::create(path, metadata(dtype));
    // ~5 characters a token, as English WordPiece text.
    std::vector<deformer::cache::CharSpan> offsets(kQuestionRows - 1);
    std::string text;
    for (int t = 0; t < kQuestionRows - 1; ++t) {
      offsets[t] = {5 * t, 5 * t + 4};
      text += "word ";
    }
    for (int w = 0; w < kQuestionWindows; ++w) {
      const float* rows = states().data() + static_cast<size_t>(w % kWindows) * kBlock * kHidden;
      writer->add_document("d" + std::to_string(w), text, offsets, {{{0, kQuestionRows - 1}, kQuestionRows, rows}});
    }
    writer->commit();
  }
  return path;
}

// Arguments: dtype (0 fp32, 1 fp16, 3 int8), as stored (16-bit out), windows per call, ReadOptions::read_threads,
// ReadOptions::direct_reads (0: every read through H5Dread, as before direct reads existed),
// ReadOptions::verify_checksums (0: the cost of verifying every window, measured against 1).
void BM_QuestionRead(benchmark::State& state) {
  const auto dtype = static_cast<StateDType>(state.range(0));
  const bool as_stored = state.range(1) != 0;
  const int batch = static_cast<int>(state.range(2));
  ReadOptions options;
  options.read_threads = static_cast<int>(state.range(3));
  options.direct_reads = state.range(4) != 0;
  options.verify_checksums = state.range(5) != 0;
  auto reader = CacheReader::open(question_file(dtype), options);
  if (reader->direct_reads() != options.direct_reads) state.SkipWithError("direct reads unavailable");
  const size_t values = static_cast<size_t>(batch) * kQuestionRows * kHidden;
  std::vector<float> floats(as_stored ? 0 : values);
  std::vector<uint16_t> halves(as_stored ? values : 0);
  std::mt19937 rng(3);
  std::vector<int64_t> request(batch);
  for (auto _ : state) {
    for (auto& w : request) w = rng() % kQuestionWindows;
    if (as_stored)
      reader->read_windows_16bit(request, kQuestionRows, halves.data());
    else
      reader->read_windows(request, kQuestionRows, floats.data());
    benchmark::ClobberMemory();
  }
  const double bytes_per_window = static_cast<double>(kQuestionRows) * kHidden *
                                  (dtype == StateDType::kFloat32 ? 4 : dtype == StateDType::kInt8 ? 1 : 2);
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch * bytes_per_window));
  state.counters["us/window"] = benchmark::Counter(static_cast<double>(state.iterations()) * batch,
                                                   benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(std::string(to_string(dtype)) + (as_stored ? " as stored" : " to float") +
                 (options.direct_reads ? " pread" : " H5Dread") + (options.verify_checksums ? "" : " unverified"));
}

// The question path's per-document lookups: document(find(id)), token_offsets and document_text.
// Argument: ReadOptions::direct_reads.
void BM_DocumentLookup(benchmark::State& state) {
  ReadOptions options;
  options.direct_reads = state.range(0) != 0;
  auto reader = CacheReader::open(question_file(StateDType::kFloat16), options);
  std::mt19937 rng(4);
  for (auto _ : state) {
    const std::string id = "d" + std::to_string(rng() % kQuestionWindows);
    const auto& info = reader->document(reader->find(id));
    auto offsets = reader->token_offsets(reader->find(id));
    auto text = reader->document_text(reader->find(id));
    benchmark::DoNotOptimize(info.num_windows);
    benchmark::DoNotOptimize(offsets.data());
    benchmark::DoNotOptimize(text.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_WriteWindows(benchmark::State& state) {
  const auto dtype = static_cast<StateDType>(state.range(0));
  const int gzip = static_cast<int>(state.range(1));
  const auto path = (bench_dir() / "write.h5").string();
  for (auto _ : state) write(path, dtype, gzip, kWindows);
  state.SetItemsProcessed(state.iterations() * kWindows);
  state.counters["bytes/window"] = static_cast<double>(fs::file_size(path)) / kWindows;
  state.SetLabel(std::string(to_string(dtype)) + (gzip ? " gzip" + std::to_string(gzip) + "+shuffle" : " raw"));
}

void read_arguments(benchmark::internal::Benchmark* b) {
  for (int dtype : {0, 1, 2, 3})
    for (int gzip : {0, 4})
      for (int batch : {1, 16}) b->Args({dtype, gzip, batch});
}
void write_arguments(benchmark::internal::Benchmark* b) {
  for (int dtype : {0, 1, 2, 3})
    for (int gzip : {0, 1, 4}) b->Args({dtype, gzip});
}

void question_arguments(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "stored", "batch", "threads", "direct", "verify"});
  for (auto [dtype, as_stored] : std::vector<std::pair<int, int>>{{0, 0}, {1, 1}, {1, 0}, {3, 0}})
    for (int batch : {1, 8, 256}) {
      b->Args({dtype, as_stored, batch, 1, 0, 1});
      b->Args({dtype, as_stored, batch, 1, 1, 0});
      for (int threads : {1, 2, 4}) b->Args({dtype, as_stored, batch, threads, 1, 1});
    }
}

BENCHMARK(BM_QuestionRead)->Apply(question_arguments)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DocumentLookup)->ArgName("direct")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReadWindows)->Apply(read_arguments)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WriteWindows)->Apply(write_arguments)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  fs::remove_all(bench_dir());
  return 0;
}
