// A child's tasks: a cache build, full or deformer mode over the workload, and the two alternating call by call.
// Each prints one JSON object for the parent.
#include <algorithm>
#include <map>
#include <memory>

#include "bench.h"
#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/layout.h"

namespace deformer::bench {

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

namespace {

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

// Where a child's calls go: the resident cache when given one, else the cache file (deformer mode), else the
// documents themselves (full mode).
struct Target {
  const Calls& calls;
  const cache::CacheReader* cache = nullptr;  // deformer mode
  std::vector<std::vector<Answer>> ask(const Reader& reader, const ResidentCache* states, size_t g) const {
    if (states) return reader.ask(calls.queries[g], *states);
    if (cache) return reader.ask(calls.queries[g], *cache);
    return reader.ask(calls.queries[g], calls.documents[g]);
  }
};

// One untimed pass, then `repeats` timed ones: per group each timed pass's seconds; every question's first answer.
std::vector<std::vector<double>> timed_passes(const Target& target, const Reader& reader, const ResidentCache* states,
                                              int repeats, const Model& model, std::vector<std::string>& answers) {
  const auto& groups = target.calls.groups;
  std::vector<std::vector<double>> times(groups.size());
  for (int pass = 0; pass <= repeats; ++pass)
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto begin = Clock::now();
      auto result = target.ask(reader, states, g);
      synchronize(model);
      const double s = seconds_since(begin);
      if (pass > 0) times[g].push_back(s);
      for (size_t i = 0; i < groups[g].size(); ++i) answers[groups[g][i]] = result[i].empty() ? "" : result[i].front().answer;
    }
  return times;
}

// One more pass with the reader's phases timed (ReaderOptions::on_phase), for where the time goes.
std::map<std::string, double> phase_times(const Target& target, std::shared_ptr<const Model> model,
                                          const ResidentCache* states) {
  std::map<std::string, double> phases;
  ReaderOptions po = target.calls.options;
  po.on_phase = [&](const char* phase, double seconds) { phases[phase] += seconds * 1e3; };
  Reader profiled(model, po);
  for (size_t g = 0; g < target.calls.groups.size(); ++g) target.ask(profiled, states, g);
  return phases;
}

// The paper's memory figure (the DeFormer code's benchmark.py --profile_memory: TensorFlow's total_requested_bytes)
// is not a peak but the bytes every op of a forward requests, summed. Measured over one pass: on the GPU, LibTorch's
// CUDA allocator's cumulative allocated bytes, on the same model loaded without CUDA graphs (a replay allocates
// nothing); on the CPU, the bytes malloc is asked for. -1 where neither can be counted.
double requested_bytes_per_question(const BenchArgs& args, const Target& target, std::shared_ptr<const Model> model,
                                    const ResidentCache* states, size_t questions) {
  const bool gpu = model->options().device == Device::kCUDA;
  std::shared_ptr<const Model> eager = model;
  std::unique_ptr<ResidentCache> eager_states;
  if (gpu) {
    LoadOptions eager_options = model->options();
    eager_options.cuda_graphs = false;
    eager = Model::load(args.model.model, eager_options);
    if (states) eager_states = std::make_unique<ResidentCache>(*target.cache, eager);
  }
  Reader eager_reader(eager, target.calls.options);
  auto pass = [&] {
    for (size_t g = 0; g < target.calls.groups.size(); ++g)
      target.ask(eager_reader, gpu ? eager_states.get() : states, g);
    synchronize(*eager);
  };
  if (gpu) pass();  // the fresh model's one-time allocations (cuBLAS workspaces); the CPU model is warm
  const int64_t bytes = gpu ? cuda_bytes_requested(*eager, pass) : host_bytes_requested(pass);
  return bytes >= 0 ? double(bytes) / questions : -1;
}

// The cache's share: the same windows read again per group (the file is in the page cache by now), as the reader
// reads them.
json cache_read_share(const BenchArgs& args, const Workload& w, const Calls& calls, const cache::CacheReader& cache,
                      const Model& model, double question_seconds) {
  std::vector<double> reads;
  std::vector<float> buffer;
  int64_t read_windows = 0;
  const int64_t hidden = model.config().hidden_size;
  for (int pass = 0; pass < std::max(args.repeats, 1); ++pass) {
    const auto begin = Clock::now();
    read_windows = 0;
    for (const auto& group : calls.groups) {
      std::vector<int64_t> ws;
      for (size_t q : group) {
        const auto& info = cache.document(cache.find(w.questions[q].doc_id));
        for (int64_t i = 0; i < info.num_windows; ++i) ws.push_back(info.first_window + i);
      }
      // The group's longest window's rows, 16-bit states as stored when the model computes in their dtype.
      int64_t longest = 1;
      for (int64_t i : ws) longest = std::max(longest, cache.window(i).rows);
      buffer.resize(ws.size() * longest * hidden);
      const auto stored = cache.metadata().state_dtype;
      if ((stored == cache::StateDType::kFloat16 && model.options().dtype == DType::kFloat16) ||
          (stored == cache::StateDType::kBFloat16 && model.options().dtype == DType::kBFloat16))
        cache.read_windows_16bit(ws, longest, reinterpret_cast<uint16_t*>(buffer.data()));
      else
        cache.read_windows(ws, longest, buffer.data());
      read_windows += ws.size();
    }
    reads.push_back(seconds_since(begin));
  }
  const double read = median(reads);
  return {{"storage_dtype", args.cache_dtype},
          {"windows", read_windows},
          {"us_per_window", read / read_windows * 1e6},
          {"fraction_of_question_time", read / question_seconds}};
}

// Per-pass time, latencies, windows and FLOPs of the workload from each group's median time.
json speed_of(const Calls& calls, const std::vector<std::vector<double>>& times, const ModelConfig& c, bool deformer,
              int k) {
  std::vector<double> latencies;
  double total = 0, flops = 0;
  int64_t windows = 0;
  for (size_t g = 0; g < calls.groups.size(); ++g) {
    const double group_time = median(times[g]);
    total += group_time;
    for (size_t q : calls.groups[g]) {
      latencies.push_back(group_time * 1e3);  // a question's answer arrives when its group's call returns
      const auto& s = calls.shapes[q];
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
  const double questions = latencies.size();
  return {{"questions", latencies.size()},
          {"windows", windows},
          {"groups", calls.groups.size()},
          {"batch_size", calls.options.batch_size},
          {"questions_per_s", questions / total},
          {"latency_ms", {{"p50", percentile(latencies, 50)}, {"p99", percentile(latencies, 99)},
                          {"mean", total * 1e3 / questions}}},
          {"seconds_per_pass", total},
          {"model_gflop_per_question", flops / questions / 1e9},
          {"achieved_tflop_s", flops / total / 1e12}};
}

}  // namespace

// Full or deformer mode over the workload: one untimed pass, then `repeats` timed passes; per group the median.
json child_mode(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model) {
  const bool held = args.child == "resident";
  const bool deformer = args.child == "deformer" || held;
  const Calls calls = plan_calls(args, w, model, deformer ? Mode::kDeformer : Mode::kFull, args.child_k);
  Reader reader(model, calls.options);
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
  const Target target{calls, cache.get()};

  synchronize(*model);
  const int64_t rss_before = proc_status_bytes("VmRSS:");
  const auto cuda_before = cuda_memory(*model);
  reset_cuda_peak(*model);
  std::vector<std::string> answers(w.questions.size());
  const auto times = timed_passes(target, reader, resident.get(), args.repeats, *model, answers);
  const auto cuda_after = cuda_memory(*model);
  const int64_t rss_peak = proc_status_bytes("VmHWM:");
  const auto phases = phase_times(target, model, resident.get());
  const double requested_per_question =
      requested_bytes_per_question(args, target, model, resident.get(), w.questions.size());

  json r = speed_of(calls, times, model->config(), deformer, k);
  r["mode"] = deformer ? "deformer" : "full";
  r["states"] = held ? "resident" : deformer ? "file" : "computed";
  r["rss_after_load_bytes"] = rss_before;
  r["rss_peak_bytes"] = rss_peak;
  r["question_time_rss_bytes"] = rss_peak - rss_before;
  r["phases_ms_per_pass"] = phases;
  r["phases_note"] = "one more pass with the device synchronised after each phase (ReaderOptions::on_phase)";
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
  if (deformer) r["k"] = k;
  if (deformer && !held) {
    r["cache_read"] = cache_read_share(args, w, calls, *cache, *model, r["seconds_per_pass"].get<double>());
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

}  // namespace deformer::bench
