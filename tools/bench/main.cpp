// deformer-bench: question-time speed and memory of full mode and deformer mode on a SQuAD-dev-shaped
// workload (issue 6, docs/design.md, 'Performance model'), with eager PyTorch and Hugging Face references on the
// same windows.
//
// The parent process reads the SQuAD file, picks --limit questions spread over it (each asked over its own
// paragraph's windows) and runs every measurement in a child process of this program, so that each mode's
// peak memory is its own: a cache build per k, then full mode and deformer mode per k. Children print one
// JSON object; the parent adds the references (benchmarks/reference_bench.py) and prints the report.
#include <CLI/CLI.hpp>
#include <torch/script.h>
#include <torch/cuda.h>
#include <ATen/Parallel.h>
#ifdef DEFORMER_CUDA_STATS  // a LibTorch with CUDA (CMake found c10_cuda)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef DEFORMER_MALLOC_HOOKS
#include <gperftools/malloc_hook_c.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ftw.h>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/reader.h"
#include "deformer/squad.h"
#include "deformer/tokenizer.h"
#include "deformer/version.h"
#include "options.h"

extern char** environ;

namespace deformer::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  cli::ModelArgs model;
  std::string squad;                 // SQuAD v1.1 dev JSON; default $DEFORMER_DATA/squad/dev-v1.1.json
  size_t limit = 64;                 // questions, spread over the file (one per paragraph while there are enough)
  std::vector<int> ks{-1};           // split layers for deformer mode; -1 = the model's trained split
  std::string k_sweep;               // "a..b": every k from a to b instead of --k
  int batch = 8;                     // (question, window) pairs per upper-layer call
  int pass_cost = -1;                // ReaderOptions::pass_cost_tokens; -1 = the reader's default for the device
  std::vector<std::string> modes{"full", "deformer"};  // and "resident": deformer mode over a ResidentCache
  int repeats = 3;                   // timed passes over the workload after one untimed pass
  int rounds = 1;                    // every measurement this many times, interleaved; the median round is reported
  std::vector<std::string> references;  // eager, hf
  bool paired = false;               // also full and deformer mode alternating call by call in one process
  std::string cache_dtype = "fp32";  // storage dtype of the cache deformer mode reads
  std::string work;                  // directory for caches and reference inputs; default a temporary one
  std::string out;                   // JSON file; default stdout unless it is a terminal
  bool json_stdout = false;          // JSON on stdout even on a terminal
  std::string python;                // interpreter for the references; default $DEFORMER_PYTHON or /usr/bin/python3
  // Internal: the child's task ("build", "full", "deformer", "resident", "paired") and its split layer.
  std::string child;
  int child_k = -1;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Nearest-rank percentile.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

double seconds_since(Clock::time_point begin) { return std::chrono::duration<double>(Clock::now() - begin).count(); }

// VmRSS / VmHWM of this process in bytes (Linux).
int64_t proc_status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(std::string(field).size())) * 1024;
  return -1;
}

// FLOPs of one BERT layer at T tokens (docs/design.md, 'Performance model'): 2T(4H^2 + 2HF) + 4T^2 H.
double layer_flops(double tokens, const ModelConfig& c) {
  const double h = c.hidden_size, f = c.intermediate_size;
  return 2 * tokens * (4 * h * h + 2 * h * f) + 4 * tokens * tokens * h;
}

// ---------------------------------------------------------------------------------------------------
// The workload

struct BenchQuestion {
  std::string text;
  std::string doc_id;   // paragraph_id of its paragraph
  size_t paragraph = 0; // index into Workload::contexts
};

struct Workload {
  std::vector<Document> contexts;  // the paragraphs the questions are asked over, ids = paragraph_id
  std::vector<BenchQuestion> questions;
};

std::string default_squad() {
  const char* data = std::getenv("DEFORMER_DATA");
  if (!data || !*data) return "";
  return std::string(data) + "/squad/dev-v1.1.json";
}

Workload read_workload(const BenchArgs& args) {
  const std::string path = args.squad.empty() ? default_squad() : args.squad;
  if (path.empty()) throw std::invalid_argument("give --squad dev-v1.1.json (or set DEFORMER_DATA)");
  if (!std::ifstream(path).good())
    throw std::runtime_error("cannot read SQuAD file '" + path + "'" +
                             (args.squad.empty() ? " (from DEFORMER_DATA; unzip squad/dev-v1.1.json.zip there or pass --squad)" : ""));
  const auto dataset = squad::read_dataset(path);
  // Questions spread over the whole file, each from another paragraph while there are paragraphs enough (the
  // r-th question of every paragraph in round r): SQuAD's paragraph lengths as they come, not the first article's.
  struct Place {
    size_t article, paragraph;
  };
  std::vector<Place> paragraphs;
  for (size_t a = 0; a < dataset.articles.size(); ++a)
    for (size_t p = 0; p < dataset.articles[a].paragraphs.size(); ++p) paragraphs.push_back({a, p});
  if (paragraphs.empty()) throw std::invalid_argument("'" + path + "' has no paragraphs");
  Workload w;
  std::map<size_t, size_t> context_of;  // paragraph -> index into w.contexts
  const size_t per_round = std::min(args.limit, paragraphs.size());
  for (size_t round = 0; w.questions.size() < args.limit; ++round) {
    bool any = false;
    for (size_t i = 0; i < per_round && w.questions.size() < args.limit; ++i) {
      const size_t p = i * paragraphs.size() / per_round;
      const auto& article = dataset.articles[paragraphs[p].article];
      const auto& paragraph = article.paragraphs[paragraphs[p].paragraph];
      if (round >= paragraph.questions.size()) continue;
      any = true;
      if (!context_of.count(p)) {
        context_of[p] = w.contexts.size();
        w.contexts.push_back({squad::paragraph_id(article, paragraphs[p].article, paragraphs[p].paragraph), paragraph.context});
      }
      w.questions.push_back({paragraph.questions[round].question, w.contexts[context_of[p]].id, context_of[p]});
    }
    if (!any) break;
  }
  if (w.questions.empty()) throw std::invalid_argument("'" + path + "' has no questions");
  return w;
}

// Per question: its windows in both layouts and their real token counts, for grouping and the FLOP model.
struct QuestionShape {
  int64_t question_tokens = 0;                 // question word pieces (before any cut)
  std::vector<int64_t> deformer_window_rows;   // real rows of each document block (tokens + [SEP])
  std::vector<std::vector<int64_t>> full_rows; // [CLS] q [SEP] window [SEP] ids of each full-mode window
};

std::vector<QuestionShape> shapes_of(const Workload& w, const Model& model, const Tokenizer& tokenizer) {
  const auto& c = model.config();
  const auto& special = tokenizer.special_tokens();
  std::vector<std::vector<int64_t>> context_ids;
  for (const auto& d : w.contexts) {
    auto enc = tokenizer.encode(d.text);
    context_ids.emplace_back(enc.ids.begin(), enc.ids.end());
  }
  std::vector<QuestionShape> shapes;
  for (const auto& q : w.questions) {
    QuestionShape s;
    auto enc = tokenizer.encode(q.text);
    std::vector<int64_t> qi(enc.ids.begin(), enc.ids.end());
    s.question_tokens = qi.size();
    const auto& ids = context_ids[q.paragraph];
    for (const auto& span : document_windows(ids.size(), c.document_block - 1, c.window_stride))
      s.deformer_window_rows.push_back(span.end - span.begin + 1);
    // The reader's full-mode windowing (Hugging Face's): the question cut to max_question_len, windows as long
    // as max_seq_len allows, overlapping by doc_stride.
    if (qi.size() > size_t(c.max_question_len)) qi.resize(c.max_question_len);
    const int window = c.max_seq_len - int(qi.size()) - 3;
    for (const auto& span : document_windows(ids.size(), window, window - c.doc_stride)) {
      std::vector<int64_t> tokens(ids.begin() + span.begin, ids.begin() + span.end);
      const int length = int(qi.size() + tokens.size() + 3);
      s.full_rows.push_back(full_block(qi, tokens, length, c.max_question_len, special).input_ids);
    }
    shapes.push_back(std::move(s));
  }
  return shapes;
}

// Consecutive questions whose deformer windows fill at most `batch` upper-layer rows (a question with more
// windows than that forms a group alone): each group is one upper-layer call.
std::vector<std::vector<size_t>> group_questions(const std::vector<QuestionShape>& shapes, int batch) {
  std::vector<std::vector<size_t>> groups;
  int64_t filled = 0;
  for (size_t q = 0; q < shapes.size(); ++q) {
    const int64_t n = shapes[q].deformer_window_rows.size();
    if (groups.empty() || filled + n > batch) {
      groups.emplace_back();
      filled = 0;
    }
    groups.back().push_back(q);
    filled += n;
  }
  return groups;
}

// ---------------------------------------------------------------------------------------------------
// Child tasks

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

// LibTorch's CUDA allocator (aggregate pool): bytes handed out to tensors and bytes held from the device (what
// the process takes from the GPU, the graphs' memory pool included), peak and current; -1 without CUDA.
struct CudaMemory {
  int64_t allocated_peak = -1, allocated = -1, reserved_peak = -1, reserved = -1;
  int64_t allocated_total = -1;  // every allocation's bytes summed since the process began
};
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

// Bytes the allocations made while `run` runs request, summed (frees not subtracted); -1 without CUDA stats.
int64_t cuda_bytes_requested(const Model& model, const std::function<void()>& run) {
  const int64_t before = cuda_memory(model).allocated_total;
  if (before < 0) return -1;
  run();
  return cuda_memory(model).allocated_total - before;
}

#ifdef DEFORMER_MALLOC_HOOKS  // tcmalloc's allocation hook (tools/CMakeLists.txt)
std::atomic<bool> counting_allocations{false};
std::atomic<int64_t> allocated_while_counting{0};
void count_allocation(const void*, size_t size) {
  if (counting_allocations.load(std::memory_order_relaxed)) allocated_while_counting.fetch_add(size, std::memory_order_relaxed);
}
#endif

// The same for the host: the bytes every malloc from any thread asks for while `run` runs; -1 without tcmalloc.
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

std::string cache_path(const BenchArgs& args, int k) {
  return args.work + "/cache-k" + std::to_string(k) + "-" + args.cache_dtype + ".h5";
}

// Builds the contexts' cache at k (after a small untimed build), and reports windows/s.
json child_build(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model) {
  CacheBuildOptions o;
  o.k = args.child_k;
  o.dtype = cache::parse_state_dtype(args.cache_dtype);
  o.batch_size = std::max(args.batch, 8);
  {
    CacheBuilder warm(model, args.work + "/warm-up.h5", o);
    for (size_t i = 0; i < std::min<size_t>(2, w.contexts.size()); ++i) warm.add(w.contexts[i]);
    warm.commit();
  }
  const auto begin = Clock::now();
  CacheBuilder builder(model, cache_path(args, args.child_k), o);
  for (const auto& d : w.contexts) builder.add(d);
  builder.commit();
  synchronize(*model);
  const double s = seconds_since(begin);
  return {{"k", builder.split_layer()}, {"storage_dtype", args.cache_dtype}, {"batch", o.batch_size},
          {"documents", builder.documents()}, {"windows", builder.windows()}, {"seconds", s},
          {"windows_per_s", builder.windows() / s}};
}

// The upper layers alone at the layout's full length (question block + document block) on `batch` rows: the
// FLOP rate of the part deformer mode spends its time in.
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

// Matrix-multiply rate of the device in the model's dtype: the roof the FLOP rates are compared against.
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

// The workload as a child's calls: the questions in groups whose deformer windows fill at most `batch` upper-layer
// rows, one Reader::ask per group, with the options that make each group one call.
struct Calls {
  ReaderOptions options;
  std::vector<QuestionShape> shapes;
  std::vector<std::vector<size_t>> groups;
  std::vector<std::vector<Query>> queries;
  std::vector<std::vector<Document>> documents;  // full mode reads the group's contexts from the workload
};

Calls plan_calls(const BenchArgs& args, const Workload& w, const std::shared_ptr<const Model>& model, Mode mode, int k) {
  Calls calls;
  ReaderOptions& o = calls.options;
  o.mode = mode;
  o.k = k;
  o.pass_cost_tokens = args.pass_cost;
  o.decode.decoding = Decoding::kSquad;
  o.warn = [](const std::string&) {};
  Reader probe(model, o);
  calls.shapes = shapes_of(w, *model, probe.tokenizer());
  calls.groups = group_questions(calls.shapes, args.batch);
  int64_t widest = args.batch;
  for (const auto& s : calls.shapes) widest = std::max<int64_t>(widest, s.deformer_window_rows.size());
  o.batch_size = widest;  // every group is one call
  calls.queries.resize(calls.groups.size());
  calls.documents.resize(calls.groups.size());
  for (size_t g = 0; g < calls.groups.size(); ++g)
    for (size_t q : calls.groups[g]) {
      calls.queries[g].push_back({w.questions[q].text, {w.questions[q].doc_id}});
      const auto& d = w.contexts[w.questions[q].paragraph];
      auto& docs = calls.documents[g];
      if (std::none_of(docs.begin(), docs.end(), [&](const Document& x) { return x.id == d.id; })) docs.push_back(d);
    }
  return calls;
}

// Full or deformer mode over the workload: one untimed pass, then `repeats` timed passes; per group the median.
// Then one more pass with the reader's phases timed (ReaderOptions::on_phase), for where the time goes.
json child_mode(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model) {
  const bool held = args.child == "resident";
  const bool deformer = args.child == "deformer" || held;
  const auto& c = model->config();
  const Calls calls = plan_calls(args, w, model, deformer ? Mode::kDeformer : Mode::kFull, args.child_k);
  const ReaderOptions& o = calls.options;
  const auto& shapes = calls.shapes;
  const auto& groups = calls.groups;
  const auto& queries = calls.queries;
  const auto& group_docs = calls.documents;
  Reader reader(model, o);
  const int k = reader.split_layer();
  std::unique_ptr<cache::CacheReader> cache;
  if (deformer) cache = cache::CacheReader::open(cache_path(args, k), expected_cache_metadata(*model, k));
  std::unique_ptr<ResidentCache> resident;
  json resident_info;
  if (held) {
    const auto begin = Clock::now();
    resident = std::make_unique<ResidentCache>(*cache, model);
    synchronize(*model);
    resident_info = {{"bytes", resident->bytes()}, {"seconds_to_load", seconds_since(begin)}};
  }

  synchronize(*model);
  const int64_t rss_before = proc_status_bytes("VmRSS:");
  const auto cuda_before = cuda_memory(*model);
  reset_cuda_peak(*model);

  std::vector<std::vector<double>> times(groups.size());
  std::vector<std::string> answers(w.questions.size());
  auto ask_with = [&](const Reader& r, const ResidentCache* states, size_t g) {
    return held ? r.ask(queries[g], *states) : deformer ? r.ask(queries[g], *cache) : r.ask(queries[g], group_docs[g]);
  };
  auto ask = [&](const Reader& r, size_t g) { return ask_with(r, resident.get(), g); };
  for (int pass = 0; pass <= args.repeats; ++pass)
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto begin = Clock::now();
      auto result = ask(reader, g);
      synchronize(*model);
      const double s = seconds_since(begin);
      if (pass > 0) times[g].push_back(s);
      for (size_t i = 0; i < groups[g].size(); ++i) answers[groups[g][i]] = result[i].empty() ? "" : result[i].front().answer;
    }
  const auto cuda_after = cuda_memory(*model);
  const int64_t rss_peak = proc_status_bytes("VmHWM:");
  std::map<std::string, double> phases;
  {
    ReaderOptions po = o;
    po.on_phase = [&](const char* phase, double seconds) { phases[phase] += seconds * 1e3; };
    Reader profiled(model, po);
    for (size_t g = 0; g < groups.size(); ++g) ask(profiled, g);
  }
  // The paper's memory figure (the DeFormer code's benchmark.py --profile_memory: TensorFlow's
  // total_requested_bytes) is not a peak but the bytes every op of a forward requests, summed. Measured over one
  // pass: on the GPU, LibTorch's CUDA allocator's cumulative allocated bytes, on the same
  // model loaded without CUDA graphs (a replay allocates nothing); on the CPU, the bytes malloc is asked for.
  double requested_per_question = -1;
  {
    const bool gpu = model->options().device == Device::kCUDA;
    std::shared_ptr<const Model> eager = model;
    std::unique_ptr<ResidentCache> eager_states;
    if (gpu) {
      LoadOptions eager_options = model->options();
      eager_options.cuda_graphs = false;
      eager = Model::load(args.model.model, eager_options);
      if (held) eager_states = std::make_unique<ResidentCache>(*cache, eager);
    }
    Reader eager_reader(eager, o);
    auto pass = [&] {
      for (size_t g = 0; g < groups.size(); ++g) ask_with(eager_reader, gpu ? eager_states.get() : resident.get(), g);
      synchronize(*eager);
    };
    if (gpu) pass();  // the fresh model's one-time allocations (cuBLAS workspaces); the CPU model is warm
    const int64_t bytes = gpu ? cuda_bytes_requested(*eager, pass) : host_bytes_requested(pass);
    if (bytes >= 0) requested_per_question = double(bytes) / w.questions.size();
  }

  std::vector<double> group_time(groups.size()), latencies;
  double total = 0, flops = 0;
  int64_t windows = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    group_time[g] = median(times[g]);
    total += group_time[g];
    for (size_t q : groups[g]) {
      latencies.push_back(group_time[g] * 1e3);  // a question's answer arrives when its group's call returns
      const auto& s = shapes[q];
      const int64_t q_rows = std::min<int64_t>(s.question_tokens + 2, c.question_block);
      if (deformer) {
        flops += k * layer_flops(q_rows, c);
        for (int64_t rows : s.deformer_window_rows) flops += (c.num_layers - k) * layer_flops(q_rows + rows, c);
        windows += s.deformer_window_rows.size();
      } else {
        for (const auto& row : s.full_rows) flops += c.num_layers * layer_flops(row.size(), c);
        windows += s.full_rows.size();
      }
    }
  }
  json r = {{"mode", deformer ? "deformer" : "full"},
            {"states", held ? "resident" : deformer ? "file" : "computed"},
            {"questions", w.questions.size()},
            {"windows", windows},
            {"groups", groups.size()},
            {"batch_size", o.batch_size},
            {"questions_per_s", w.questions.size() / total},
            {"latency_ms", {{"p50", percentile(latencies, 50)}, {"p99", percentile(latencies, 99)},
                            {"mean", total * 1e3 / w.questions.size()}}},
            {"seconds_per_pass", total},
            {"model_gflop_per_question", flops / w.questions.size() / 1e9},
            {"achieved_tflop_s", flops / total / 1e12},
            {"rss_after_load_bytes", rss_before},
            {"rss_peak_bytes", rss_peak},
            {"question_time_rss_bytes", rss_peak - rss_before},
            {"phases_ms_per_pass", phases},
            {"phases_note", "one more pass with the device synchronised after each phase (ReaderOptions::on_phase)"}};
  if (held) r["resident"] = resident_info;
  if (cuda_after.allocated_peak >= 0)
    r["cuda"] = {{"peak_allocated_bytes", cuda_after.allocated_peak},
                 {"allocated_after_load_bytes", cuda_before.allocated},
                 {"question_time_peak_bytes", cuda_after.allocated_peak - cuda_before.allocated},
                 {"peak_reserved_bytes", cuda_after.reserved_peak},
                 {"reserved_after_load_bytes", cuda_before.reserved},
                 {"question_time_reserved_peak_bytes", cuda_after.reserved_peak - cuda_before.reserved}};
  if (requested_per_question >= 0) {
    r["requested_bytes_per_question"] = requested_per_question;
    r["requested_bytes_note"] = "the bytes all allocations of one pass request, summed, per question (without CUDA graphs): "
                                "the paper's memory measure (TensorFlow's total_requested_bytes), not a peak";
  }
  if (deformer) {
    r["k"] = k;
  }
  if (deformer && !held) {
    // The cache's share: the same windows read again per group (the file is in the page cache by now).
    std::vector<double> reads;
    std::vector<float> buffer;
    int64_t read_windows = 0;
    for (int pass = 0; pass < std::max(args.repeats, 1); ++pass) {
      const auto begin = Clock::now();
      read_windows = 0;
      for (size_t g = 0; g < groups.size(); ++g) {
        std::vector<int64_t> ws;
        for (size_t q : groups[g]) {
          const auto& info = cache->document(cache->find(w.questions[q].doc_id));
          for (int64_t i = 0; i < info.num_windows; ++i) ws.push_back(info.first_window + i);
        }
        // As the reader reads: the group's longest window's rows, 16-bit states as stored when the model computes
        // in their dtype.
        int64_t longest = 1;
        for (int64_t i : ws) longest = std::max(longest, cache->window(i).rows);
        buffer.resize(ws.size() * longest * c.hidden_size);
        const auto stored = cache->metadata().state_dtype;
        if ((stored == cache::StateDType::kFloat16 && model->options().dtype == DType::kFloat16) ||
            (stored == cache::StateDType::kBFloat16 && model->options().dtype == DType::kBFloat16))
          cache->read_windows_16bit(ws, longest, reinterpret_cast<uint16_t*>(buffer.data()));
        else
          cache->read_windows(ws, longest, buffer.data());
        read_windows += ws.size();
      }
      reads.push_back(seconds_since(begin));
    }
    const double read = median(reads);
    r["cache_read"] = {{"storage_dtype", args.cache_dtype},
                       {"windows", read_windows},
                       {"us_per_window", read / read_windows * 1e6},
                       {"fraction_of_question_time", read / total}};
    r["upper_layers"] = upper_layer_rate(*model, k, args.batch);
  }
  r["answers_sample"] = std::vector<std::string>(answers.begin(), answers.begin() + std::min<size_t>(3, answers.size()));
  return r;
}

// Full mode and deformer mode in one process, call by call (group g in full mode, then in deformer mode from the
// cache file): their ratio moves little with a machine whose speed drifts more slowly than a call. One untimed
// pass, then `repeats` timed ones; the ratio of each pass and their median.
json child_paired(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model) {
  const Calls full = plan_calls(args, w, model, Mode::kFull, -1);
  const Calls split = plan_calls(args, w, model, Mode::kDeformer, args.child_k);
  const Reader full_reader(model, full.options), split_reader(model, split.options);
  const int k = split_reader.split_layer();
  const auto cache = cache::CacheReader::open(cache_path(args, k), expected_cache_metadata(*model, k));
  json passes = json::array();
  std::vector<double> ratios;
  for (int pass = 0; pass <= args.repeats; ++pass) {
    double full_s = 0, split_s = 0;
    for (size_t g = 0; g < full.groups.size(); ++g) {
      auto begin = Clock::now();
      full_reader.ask(full.queries[g], full.documents[g]);
      synchronize(*model);
      full_s += seconds_since(begin);
      begin = Clock::now();
      split_reader.ask(split.queries[g], *cache);
      synchronize(*model);
      split_s += seconds_since(begin);
    }
    if (pass == 0) continue;
    passes.push_back({{"full_seconds", full_s}, {"deformer_seconds", split_s}});
    ratios.push_back(full_s / split_s);
  }
  return {{"k", k}, {"questions", w.questions.size()}, {"groups", full.groups.size()}, {"passes", passes},
          {"deformer_vs_full", median(ratios)},
          {"note", "full and deformer mode alternating call by call in one process; per pass the full mode's time "
                   "over the deformer mode's, the median over passes"}};
}

// ---------------------------------------------------------------------------------------------------
// The parent: children, references, report

// Removes the temporary work directory (nftw, not std::filesystem::remove_all: see tests/test_data.h).
void remove_tree(const std::string& path) {
  ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return std::string(buf, n);
}

// Runs argv, returns its stdout; std::runtime_error naming the program when it fails.
std::string run_capture(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {}) {
  int pipe_fd[2];
  if (::pipe(pipe_fd) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fd[1], 1);
  posix_spawn_file_actions_addclose(&actions, pipe_fd[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) env_storage.push_back(*e);
  for (const auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fd[1]);
  if (rc != 0) {
    ::close(pipe_fd[0]);
    throw std::runtime_error("cannot start '" + argv[0] + "': " + std::strerror(rc));
  }
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(pipe_fd[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(pipe_fd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("'" + argv[0] + (argv.size() > 1 ? " " + argv[1] : std::string()) + "' failed (" +
                             (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status))) + ")");
  return out;
}

std::vector<std::string> child_argv(const BenchArgs& args, const std::string& task, int k) {
  std::vector<std::string> a{self_executable(), "--model", args.model.model, "--device", args.model.device, "--dtype",
                             args.model.dtype, "--threads", std::to_string(args.model.threads), "--squad", args.squad,
                             "--limit", std::to_string(args.limit), "--batch", std::to_string(args.batch),
                             "--pass-cost", std::to_string(args.pass_cost), "--repeats",
                             std::to_string(args.repeats), "--cache-dtype", args.cache_dtype, "--work", args.work,
                             "--child", task, "--child-k", std::to_string(k)};
  return a;
}

json run_child(const BenchArgs& args, const std::string& task, int k) {
  const std::string out = run_capture(child_argv(args, task, k));
  try {
    return json::parse(out);
  } catch (const json::exception& e) {
    throw std::runtime_error("child '" + task + "' printed no JSON: " + out.substr(0, 200));
  }
}

// The reference input: each group's full-mode windows (ids; token types and masks follow from them).
std::string write_reference_input(const BenchArgs& args, const Workload& w, const Model& model) {
  ReaderOptions o;
  o.mode = Mode::kFull;
  Reader probe(std::shared_ptr<const Model>(&model, [](const Model*) {}), o);
  const auto shapes = shapes_of(w, model, probe.tokenizer());
  const auto groups = group_questions(shapes, args.batch);
  json j = {{"sep", probe.tokenizer().special_tokens().sep}, {"groups", json::array()}};
  for (const auto& g : groups) {
    json rows = json::array();
    for (size_t q : g)
      for (const auto& row : shapes[q].full_rows) rows.push_back(row);
    j["groups"].push_back({{"questions", g.size()}, {"rows", rows}});
  }
  const std::string path = args.work + "/reference-input.json";
  std::ofstream(path) << j.dump();
  return path;
}

// The reference script and the pydeformer package: installed next to this program, else in the source tree.
std::pair<std::string, std::string> reference_paths() {
  const std::string exe = self_executable();
  const std::string bin = exe.substr(0, exe.rfind('/'));
  const std::string installed = bin + "/../share/libdeformer/reference_bench.py";
  if (std::ifstream(installed).good() && std::ifstream(bin + "/pydeformer/bert.py").good()) return {installed, bin};
  return {DEFORMER_REFERENCE_SCRIPT, DEFORMER_TOOLS_DIR};
}

json run_reference(const BenchArgs& args, const std::string& kind, const std::string& input) {
  std::string python = args.python;
  if (python.empty()) {
    const char* env = std::getenv("DEFORMER_PYTHON");
    python = env && *env ? env : "/usr/bin/python3";
  }
  const auto [script, python_path] = reference_paths();
  const std::vector<std::string> argv{python, script, "--kind", kind, "--model", args.model.model,
                                      "--input", input, "--device", args.model.device, "--dtype", args.model.dtype,
                                      "--threads", std::to_string(args.model.threads), "--repeats",
                                      std::to_string(args.repeats)};
  try {
    return json::parse(run_capture(argv, {"PYTHONPATH=" + python_path}));
  } catch (const std::exception& e) {
    return {{"reference", kind}, {"available", false}, {"reason", e.what()}};
  }
}

std::vector<int> parse_k_sweep(const std::string& text) {
  const auto dots = text.find("..");
  if (dots == std::string::npos) throw std::invalid_argument("--k-sweep takes a..b, got '" + text + "'");
  const int a = std::stoi(text.substr(0, dots)), b = std::stoi(text.substr(dots + 2));
  if (a > b) throw std::invalid_argument("--k-sweep " + text + ": the first k is larger than the last");
  std::vector<int> ks;
  for (int k = a; k <= b; ++k) ks.push_back(k);
  return ks;
}

void print_table(const json& r, std::ostream& os) {
  const auto& m = r["model"];
  os << "deformer-bench: " << r["device"].get<std::string>() << ", " << r["dtype"].get<std::string>() << ", threads "
     << r["threads"] << ", batch " << r["batch"] << ", " << r["workload"]["questions"] << " SQuAD dev questions; model "
     << m["layers"] << " layers, hidden " << m["hidden_size"] << (m["random_weights"].get<bool>() ? " (random weights)" : "") << "\n";
  os << std::left << std::setw(22) << "run" << std::right << std::setw(12) << "questions/s" << std::setw(11) << "p50 ms"
     << std::setw(11) << "p99 ms" << std::setw(10) << "TFLOP/s" << std::setw(13) << "peak RSS MB" << std::setw(14)
     << "question MB" << "\n";
  auto row = [&](const std::string& name, const json& x) {
    os << std::left << std::setw(22) << name << std::right << std::fixed << std::setprecision(2) << std::setw(12)
       << x.value("questions_per_s", 0.0) << std::setw(11) << x["latency_ms"].value("p50", 0.0) << std::setw(11)
       << x["latency_ms"].value("p99", 0.0) << std::setw(10) << std::setprecision(3) << x.value("achieved_tflop_s", 0.0)
       << std::setprecision(0) << std::setw(13) << x.value("rss_peak_bytes", 0) / 1e6 << std::setw(14)
       << (x.contains("cuda") ? x["cuda"].value("question_time_peak_bytes", 0) : x.value("question_time_rss_bytes", 0)) / 1e6
       << "\n";
  };
  for (const auto& x : r["runs"])
    row(x["mode"].get<std::string>() + (x.contains("k") ? " k=" + std::to_string(x["k"].get<int>()) : "") +
            (x.value("states", "") == "resident" ? " resident" : ""),
        x);
  for (const auto& x : r["references"]) {
    if (x.value("available", false)) row("ref " + x["reference"].get<std::string>(), x);
    else os << "ref " << x["reference"].get<std::string>() << ": unavailable (" << x.value("reason", "") << ")\n";
  }
  for (const auto& [name, value] : r["ratios"].items()) {
    os << "  " << name << ": " << std::setprecision(2) << value.get<double>() << "x";
    if (r.contains("ratios_by_round") && r["ratios_by_round"].contains(name)) {
      os << " (by round:";
      for (const auto& x : r["ratios_by_round"][name]) os << " " << x.get<double>();
      os << ")";
    }
    os << "\n";
  }
  for (const auto& b : r["cache_build"]) os << "  cache build k=" << b["k"] << ": " << std::setprecision(1) << b["windows_per_s"].get<double>() << " windows/s\n";
  for (const auto& x : r["runs"]) {
    os << "  phases of " << x["mode"].get<std::string>() << (x.contains("k") ? " k=" + std::to_string(x["k"].get<int>()) : "")
       << (x.value("states", "") == "resident" ? " resident" : "") << " (ms per pass):";
    for (const char* phase : {"tokenize", "lower_layers", "documents", "cache_read", "upper_layers", "layers", "decode"})
      if (x["phases_ms_per_pass"].contains(phase))
        os << " " << phase << " " << std::setprecision(1) << x["phases_ms_per_pass"][phase].get<double>();
    os << "\n";
    if (x.contains("resident"))
      os << "  resident cache: " << std::setprecision(0) << x["resident"]["bytes"].get<double>() / 1e6 << " MB on the device, loaded in "
         << std::setprecision(2) << x["resident"]["seconds_to_load"].get<double>() << " s\n";
  }
  for (const auto& x : r["runs"])
    if (x.contains("cache_read"))
      os << "  cache read k=" << x["k"] << ": " << std::setprecision(1) << x["cache_read"]["us_per_window"].get<double>()
         << " us/window (" << std::setprecision(2) << 100 * x["cache_read"]["fraction_of_question_time"].get<double>()
         << "% of question time); upper layers " << std::setprecision(2) << x["upper_layers"]["tflop_s"].get<double>()
         << " TFLOP/s (" << std::setprecision(0) << 100 * x["upper_layers"]["fraction_of_matmul_peak"].get<double>() << "% of the matmul peak)\n";
}

int run(BenchArgs& args) {
  const LoadOptions load = load_options(args);  // validates device and dtype before any work
  if (args.batch < 1) throw std::invalid_argument("--batch must be at least 1");
  if (args.repeats < 1) throw std::invalid_argument("--repeats must be at least 1");
  if (args.rounds < 1) throw std::invalid_argument("--rounds must be at least 1");
  if (args.limit < 1) throw std::invalid_argument("--limit must be at least 1");
  cache::parse_state_dtype(args.cache_dtype);
  for (const auto& m : args.modes)
    if (m != "full" && m != "deformer" && m != "resident")
      throw std::invalid_argument("unknown mode '" + m + "' (expected full, deformer or resident)");
  for (const auto& r : args.references)
    if (r != "eager" && r != "hf") throw std::invalid_argument("unknown reference '" + r + "' (expected eager or hf)");
  if (args.squad.empty()) args.squad = default_squad();
  const Workload workload = read_workload(args);

  if (!args.child.empty()) {
    auto model = Model::load(args.model.model, load);
    json r;
    if (args.child == "build") r = child_build(args, workload, model);
    else if (args.child == "full" || args.child == "deformer" || args.child == "resident") r = child_mode(args, workload, model);
    else if (args.child == "paired") r = child_paired(args, workload, model);
    else throw std::invalid_argument("unknown child task '" + args.child + "'");
    if (args.child == "deformer") r["matmul_peak"] = matmul_peak(*model);
    std::cout << r.dump() << std::endl;
    return 0;
  }

  std::string temporary;
  if (args.work.empty()) {
    char dir[] = "/tmp/deformer-bench-XXXXXX";
    if (!::mkdtemp(dir)) throw std::runtime_error("cannot create a temporary directory");
    args.work = temporary = dir;
  } else {
    ::mkdir(args.work.c_str(), 0777);
  }
  cli::refuse_output_over_inputs("--out", args.out, {args.model.model, args.squad});
  // The parent loads the model on the CPU only to read its shape and tokenizer; children measure.
  auto model = Model::load(args.model.model, LoadOptions{});
  const auto& c = model->config();
  if ((args.model.dtype == "int8") != (c.quantization == "int8-dynamic"))
    throw std::invalid_argument(args.model.dtype == "int8" ? "--dtype int8 needs a model exported with --quantize int8"
                                                           : "'" + args.model.model + "' is int8-quantized: pass --dtype int8");
  std::vector<int> ks = args.k_sweep.empty() ? args.ks : parse_k_sweep(args.k_sweep);
  for (int& k : ks) {
    k = resolve_split(c, k);
    engine::check_split(*model, k);
  }
  const bool random = c.source.rfind("random-init", 0) == 0;
  json report = {{"tool", "deformer-bench"},
                 {"library_version", version()},
                 {"device", args.model.device},
                 {"cuda_device_count", torch::cuda::device_count()},
                 {"dtype", args.model.dtype},
                 {"threads", args.model.threads > 0 ? args.model.threads : at::get_num_threads()},
                 {"batch", args.batch},
                 {"repeats", args.repeats},
                 {"model", {{"path", args.model.model}, {"hash", model->content_hash()}, {"layers", c.num_layers},
                            {"hidden_size", c.hidden_size}, {"heads", c.num_heads}, {"intermediate_size", c.intermediate_size},
                            {"vocab_size", c.vocab_size}, {"parameters", model->parameter_count()}, {"source", c.source},
                            {"quantization", c.quantization},
                            {"random_weights", random}}},
                 {"workload", {{"squad", args.squad}, {"questions", workload.questions.size()},
                               {"contexts", workload.contexts.size()},
                               {"description", "each question over its own paragraph's windows; questions spread over the file, each from "
                                               "another paragraph while there are enough; "
                                               "questions grouped so that a group's deformer windows fill at most "
                                               "`batch` upper-layer rows, one call per group; latency of a question = "
                                               "its group's call; medians over the timed passes after one untimed pass"}}},
                 {"flop_model", "docs/design.md, 'Performance model': 2T(4H^2+2HF)+4T^2H per layer, on real (unpadded) token counts"},
                 {"cache_build", json::array()},
                 {"runs", json::array()},
                 {"paired", json::array()},
                 {"references", json::array()},
                 {"ratios", json::object()}};
  if (random) report["note"] = "random weights: speed and memory only, answers are meaningless";

  const bool want_deformer = std::find(args.modes.begin(), args.modes.end(), "deformer") != args.modes.end();
  const bool want_resident = std::find(args.modes.begin(), args.modes.end(), "resident") != args.modes.end();
  const bool want_full = std::find(args.modes.begin(), args.modes.end(), "full") != args.modes.end();
  // Each measurement once per round, the rounds one after another, so that a machine whose speed drifts (a shared
  // VM) slows every mode alike; per measurement the round of median questions/s is reported, with every round's rate.
  std::vector<std::vector<json>> runs, references;  // [measurement][round]
  const std::string input = args.references.empty() ? "" : write_reference_input(args, workload, *model);
  auto keep = [](std::vector<std::vector<json>>& into, size_t& at, json r) {
    if (into.size() <= at) into.emplace_back();
    into[at++].push_back(std::move(r));
  };
  for (int round = 0; round < args.rounds; ++round) {
    const std::string of_round =
        args.rounds > 1 ? " (round " + std::to_string(round + 1) + " of " + std::to_string(args.rounds) + ")" : "";
    size_t m = 0, r = 0;
    if (want_full) {
      std::cerr << "deformer-bench: full mode" << of_round << std::endl;
      keep(runs, m, run_child(args, "full", -1));
    }
    if (want_deformer || want_resident)
      for (int k : ks) {
        if (round == 0) {
          std::cerr << "deformer-bench: cache build k=" << k << std::endl;
          report["cache_build"].push_back(run_child(args, "build", k));
        }
        if (want_deformer) {
          std::cerr << "deformer-bench: deformer mode k=" << k << of_round << std::endl;
          keep(runs, m, run_child(args, "deformer", k));
        }
        if (want_resident) {
          std::cerr << "deformer-bench: deformer mode k=" << k << ", cache resident on the device" << of_round << std::endl;
          keep(runs, m, run_child(args, "resident", k));
        }
        if (args.paired && round == 0) {
          std::cerr << "deformer-bench: full and deformer mode k=" << k << " call by call" << std::endl;
          report["paired"].push_back(run_child(args, "paired", k));
        }
      }
    for (const auto& kind : args.references) {
      std::cerr << "deformer-bench: reference " << kind << of_round << std::endl;
      keep(references, r, run_reference(args, kind, input));
    }
  }
  auto median_round = [](const std::vector<json>& rounds) {
    std::vector<std::pair<double, size_t>> rates;
    json all = json::array();
    for (size_t i = 0; i < rounds.size(); ++i) {
      rates.emplace_back(rounds[i].value("questions_per_s", 0.0), i);
      all.push_back(rates.back().first);
    }
    std::sort(rates.begin(), rates.end());
    json chosen = rounds[rates[(rates.size() - 1) / 2].second];
    if (rounds.size() > 1) chosen["questions_per_s_by_round"] = all;
    return chosen;
  };
  json full_run, matmul;
  for (const auto& measurement : runs) {
    json run = median_round(measurement);
    if (run["mode"] == "full") full_run = run;
    if (run.contains("matmul_peak")) {
      matmul = run["matmul_peak"];
      run["upper_layers"]["fraction_of_matmul_peak"] = run["upper_layers"]["tflop_s"].get<double>() / matmul["tflop_s"].get<double>();
      run.erase("matmul_peak");
    }
    report["runs"].push_back(run);
  }
  for (const auto& measurement : references) report["references"].push_back(median_round(measurement));
  report["rounds"] = args.rounds;
  if (!matmul.is_null()) report["matmul_peak"] = matmul;
  // With rounds, each speed ratio also round by round (a drifting machine moves both sides of a round together).
  json by_round = json::object();
  auto ratio_by_round = [&](const std::string& name, const std::vector<json>& of, const std::vector<json>& to) {
    if (args.rounds < 2) return;
    for (size_t i = 0; i < of.size() && i < to.size(); ++i)
      by_round[name].push_back(of[i]["questions_per_s"].get<double>() / to[i]["questions_per_s"].get<double>());
  };
  const std::vector<json>* full_rounds = nullptr;
  for (const auto& m : runs)
    if (m.front()["mode"] == "full") full_rounds = &m;
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& r = report["runs"][i];
    if (r["mode"] != "deformer") continue;
    const std::string k = (r["states"] == "resident" ? "resident_k" : "k") + std::to_string(r["k"].get<int>());
    const double qps = r["questions_per_s"].get<double>();
    for (size_t j = 0; j < references.size(); ++j) {
      const json& ref = report["references"][j];
      if (!ref.value("available", false)) continue;
      const std::string name = "deformer_" + k + "_vs_" + ref["reference"].get<std::string>();
      report["ratios"][name] = qps / ref["questions_per_s"].get<double>();
      ratio_by_round(name, runs[i], references[j]);
    }
    if (full_run.is_null()) continue;
    report["ratios"]["deformer_" + k + "_vs_full"] = qps / full_run["questions_per_s"].get<double>();
    ratio_by_round("deformer_" + k + "_vs_full", runs[i], *full_rounds);
    if (r.contains("cuda")) {
      const auto peak_ratio = [&](const char* field) {
        return double(r["cuda"][field].get<int64_t>()) / full_run["cuda"][field].get<int64_t>();
      };
      report["ratios"]["deformer_" + k + "_question_memory_vs_full"] = peak_ratio("question_time_peak_bytes");
      report["ratios"]["deformer_" + k + "_question_reserved_memory_vs_full"] = peak_ratio("question_time_reserved_peak_bytes");
    } else {
      report["ratios"]["deformer_" + k + "_question_memory_vs_full"] =
          double(r["question_time_rss_bytes"].get<int64_t>()) / full_run["question_time_rss_bytes"].get<int64_t>();
    }
    if (r.contains("requested_bytes_per_question") && full_run.contains("requested_bytes_per_question"))
      report["ratios"]["deformer_" + k + "_requested_bytes_vs_full"] =
          r["requested_bytes_per_question"].get<double>() / full_run["requested_bytes_per_question"].get<double>();
  }
  if (!full_run.is_null())
    for (const auto& ref : report["references"])
      if (ref.value("available", false))
        report["ratios"]["full_vs_" + ref["reference"].get<std::string>()] =
            full_run["questions_per_s"].get<double>() / ref["questions_per_s"].get<double>();
  if (!by_round.empty()) report["ratios_by_round"] = by_round;
  for (const auto& p : report["paired"])
    report["ratios"]["deformer_k" + std::to_string(p["k"].get<int>()) + "_vs_full_call_by_call"] = p["deformer_vs_full"];
  if (!temporary.empty()) remove_tree(temporary);

  const bool terminal = ::isatty(1);
  if (!args.out.empty()) {
    std::ofstream out(args.out);
    if (!(out << report.dump(1) << "\n")) throw std::runtime_error("cannot write '" + args.out + "'");
  }
  if (args.json_stdout || (!terminal && args.out.empty())) std::cout << report.dump(1) << std::endl;
  else print_table(report, std::cout);
  return 0;
}

}  // namespace
}  // namespace deformer::bench

int main(int argc, char** argv) {
  using deformer::bench::BenchArgs;
  BenchArgs args;
  CLI::App app{"deformer-bench: questions/s, latency, memory and FLOP rate of full and deformer mode on SQuAD dev "
               "questions (libdeformer " + std::string(deformer::version()) + ")"};
  app.set_version_flag("--version", std::string(deformer::version()));
  deformer::cli::add_model_options(&app, args.model);
  app.get_option("--device")->description("cpu, cuda or cuda:INDEX");
  app.get_option("--dtype")->description("compute dtype: fp32, fp16, bf16, or int8 for a model exported with --quantize int8 (CPU)");
  app.add_option("--squad", args.squad, "SQuAD v1.1 dev JSON (default $DEFORMER_DATA/squad/dev-v1.1.json)");
  app.add_option("--limit", args.limit, "questions, spread over the file (one per paragraph while there are enough)")->capture_default_str();
  app.add_option("--k", args.ks, "split layers for deformer mode (-1: the model's trained split, else 3/4 of the layers)")->delimiter(',')->capture_default_str();
  app.add_option("--k-sweep", args.k_sweep, "every k from a to b (a..b), instead of --k");
  app.add_option("--batch", args.batch, "(question, window) pairs per upper-layer call")->capture_default_str();
  app.add_option("--pass-cost", args.pass_cost, "ReaderOptions::pass_cost_tokens (-1: the reader's default for the device)")->capture_default_str();
  app.add_option("--modes", args.modes, "full, deformer, resident (deformer mode over the cache held on the device)")->delimiter(',')->capture_default_str();
  app.add_option("--repeats", args.repeats, "timed passes over the workload (after one untimed pass)")->capture_default_str();
  app.add_option("--rounds", args.rounds, "every measurement this many times, interleaved (the median round is reported)")
      ->capture_default_str();
  app.add_flag("--paired", args.paired,
               "also full and deformer mode alternating call by call in one process (a ratio a drifting machine moves "
               "little)");
  app.add_option("--reference", args.references, "eager (the project's PyTorch module) and/or hf (transformers, sdpa)")->delimiter(',');
  app.add_option("--cache-dtype", args.cache_dtype, "storage dtype of the cache deformer mode reads")->capture_default_str();
  app.add_option("--work", args.work, "directory for caches and reference inputs (default: a temporary one, removed)");
  app.add_option("--out", args.out, "write the JSON report here");
  app.add_flag("--json", args.json_stdout, "print JSON on stdout even on a terminal");
  app.add_option("--python", args.python, "Python with torch for the references (default $DEFORMER_PYTHON or /usr/bin/python3)");
  app.add_option("--child", args.child)->group("");
  app.add_option("--child-k", args.child_k)->group("");
  try {
    app.parse(argc, argv);
    return deformer::bench::run(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "deformer-bench: error: " << e.what() << std::endl;
    return 1;
  }
}
