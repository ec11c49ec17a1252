// deformer-bench: question-time speed and memory of full mode and deformer mode on a SQuAD-dev-shaped workload
// (docs/design.md, 'Performance model'), with eager PyTorch and Hugging Face references on the same windows.
//
// The parent process reads the SQuAD file, picks --limit questions spread over it (each asked over its own
// paragraph's windows) and runs every measurement in a child process of this program, so that each mode's
// peak memory is its own: a cache build per k, then full mode and deformer mode per k. Children print one
// JSON object; the parent adds the references (benchmarks/reference_bench.py) and prints the report. The pieces
// are listed in bench.h.
#include <CLI/CLI.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.h"
#include "deformer/cache.h"
#include "deformer/version.h"

namespace deformer::bench {
namespace {

std::vector<int> parse_k_sweep(const std::string& text) {
  const auto dots = text.find("..");
  if (dots == std::string::npos) throw std::invalid_argument("--k-sweep takes a..b, got '" + text + "'");
  const int a = std::stoi(text.substr(0, dots)), b = std::stoi(text.substr(dots + 2));
  if (a > b) throw std::invalid_argument("--k-sweep " + text + ": the first k is larger than the last");
  std::vector<int> ks;
  for (int k = a; k <= b; ++k) ks.push_back(k);
  return ks;
}

// Caller errors first, before any work: device and dtype (through load_options), counts, names.
LoadOptions validate(const BenchArgs& args) {
  const LoadOptions load = load_options(args);
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
  return load;
}

// A child: one task, its JSON on stdout.
int run_child_task(const BenchArgs& args, const Workload& workload, const LoadOptions& load) {
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

// What was measured, on what, before any measurement.
json report_header(const BenchArgs& args, const Workload& workload, const Model& model) {
  const auto& c = model.config();
  const bool random = c.source.rfind("random-init", 0) == 0;
  json report = {{"tool", "deformer-bench"},
                 {"library_version", version()},
                 {"device", args.model.device},
                 {"cuda_device_count", cuda_device_count()},
                 {"dtype", args.model.dtype},
                 {"threads", args.model.threads > 0 ? args.model.threads : compute_threads()},
                 {"batch", args.batch},
                 {"repeats", args.repeats},
                 {"model", {{"path", args.model.model}, {"hash", model.content_hash()}, {"layers", c.num_layers},
                            {"hidden_size", c.hidden_size}, {"heads", c.num_heads}, {"intermediate_size", c.intermediate_size},
                            {"vocab_size", c.vocab_size}, {"parameters", model.parameter_count()}, {"source", c.source},
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
  return report;
}

// Each measurement once per round, the rounds one after another, so that a machine whose speed drifts (a shared VM)
// slows every mode alike. Fills runs and references ([measurement][round]); cache builds and paired runs (first
// round only) go into the report directly.
void measure_rounds(const BenchArgs& args, const std::vector<int>& ks, const std::string& reference_input,
                    json& report, std::vector<std::vector<json>>& runs, std::vector<std::vector<json>>& references) {
  auto wants = [&](const char* mode) { return std::find(args.modes.begin(), args.modes.end(), mode) != args.modes.end(); };
  const bool want_full = wants("full"), want_deformer = wants("deformer"), want_resident = wants("resident");
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
      keep(references, r, run_reference(args, kind, reference_input));
    }
  }
}

int run(BenchArgs& args) {
  const LoadOptions load = validate(args);
  if (args.squad.empty()) args.squad = default_squad();
  const Workload workload = read_workload(args);
  if (!args.child.empty()) return run_child_task(args, workload, load);

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
    check_split(*model, k);
  }
  json report = report_header(args, workload, *model);
  std::vector<std::vector<json>> runs, references;  // [measurement][round]
  const std::string input = args.references.empty() ? "" : write_reference_input(args, workload, *model);
  measure_rounds(args, ks, input, report, runs, references);
  add_runs_and_ratios(report, runs, references, args.rounds);
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
