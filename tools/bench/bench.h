#pragma once
// deformer-bench (tools/bench/): question-time speed and memory of full mode and deformer mode on a SQuAD-dev-shaped
// workload (docs/design.md, 'Performance model'). The parent (main.cpp) runs every measurement in a child process of
// this program (processes.cpp) so that each mode's peak memory is its own; a child measures one task (child.cpp) on
// the workload (workload.cpp) with the device probes of measure.cpp, the one file here that includes LibTorch, and
// the parent reports (report.cpp).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deformer/model.h"
#include "deformer/reader.h"
#include "options.h"

namespace deformer::bench {

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

// Statistics and the FLOP model (measure.cpp).
double median(std::vector<double> v);
double percentile(std::vector<double> v, double p);  // nearest rank
double seconds_since(Clock::time_point begin);
// FLOPs of one BERT layer at T tokens (docs/design.md, 'Performance model'): 2T(4H^2 + 2HF) + 4T^2 H.
double layer_flops(double tokens, const ModelConfig& c);

// The workload (workload.cpp).
struct BenchQuestion {
  std::string text;
  std::string doc_id;   // paragraph_id of its paragraph
  size_t paragraph = 0; // index into Workload::contexts
};

struct Workload {
  std::vector<Document> contexts;  // the paragraphs the questions are asked over, ids = paragraph_id
  std::vector<BenchQuestion> questions;
};

// Per question: its windows in both layouts and their real token counts, for grouping and the FLOP model.
struct QuestionShape {
  int64_t question_tokens = 0;                 // question word pieces (before any cut)
  std::vector<int64_t> deformer_window_rows;   // real rows of each document block (tokens + [SEP])
  std::vector<std::vector<int64_t>> full_rows; // [CLS] q [SEP] window [SEP] ids of each full-mode window
};

// $DEFORMER_DATA/squad/dev-v1.1.json, or "" without DEFORMER_DATA.
std::string default_squad();
// --limit questions spread over the SQuAD file, each asked over its own paragraph.
Workload read_workload(const BenchArgs& args);
std::vector<QuestionShape> shapes_of(const Workload& w, const Model& model, const Tokenizer& tokenizer);
// Consecutive questions whose deformer windows fill at most `batch` upper-layer rows (a question with more
// windows than that forms a group alone): each group is one upper-layer call.
std::vector<std::vector<size_t>> group_questions(const std::vector<QuestionShape>& shapes, int batch);

// The device and the process (measure.cpp).
LoadOptions load_options(const BenchArgs& args);
void synchronize(const Model& model);
void reset_cuda_peak(const Model& model);
// LibTorch's CUDA allocator (aggregate pool): bytes handed out to tensors and bytes held from the device (what
// the process takes from the GPU, the graphs' memory pool included), peak and current; -1 without CUDA.
struct CudaMemory {
  int64_t allocated_peak = -1, allocated = -1, reserved_peak = -1, reserved = -1;
  int64_t allocated_total = -1;  // every allocation's bytes summed since the process began
};
CudaMemory cuda_memory(const Model& model);
// Bytes the allocations made while `run` runs request, summed (frees not subtracted); -1 without CUDA stats.
int64_t cuda_bytes_requested(const Model& model, const std::function<void()>& run);
// The same for the host: the bytes every malloc from any thread asks for while `run` runs; -1 without tcmalloc.
int64_t host_bytes_requested(const std::function<void()>& run);
// VmRSS / VmHWM of this process in bytes (Linux).
int64_t proc_status_bytes(const char* field);
// The upper layers alone at the layout's full length (question block + document block) on `batch` rows: the
// FLOP rate of the part deformer mode spends its time in.
json upper_layer_rate(const Model& model, int k, int batch);
// Matrix-multiply rate of the device in the model's dtype: the roof the FLOP rates are compared against.
json matmul_peak(const Model& model);
int64_t cuda_device_count();
int compute_threads();  // LibTorch's intra-op threads
// engine::check_split: std::invalid_argument for a k the model cannot split at.
void check_split(const Model& model, int k);

// A child's tasks (child.cpp): "build", "full", "deformer", "resident", "paired".
std::string cache_path(const BenchArgs& args, int k);
json child_build(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model);
json child_mode(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model);
json child_paired(const BenchArgs& args, const Workload& w, std::shared_ptr<const Model> model);

// The parent's child processes and references (processes.cpp).
// Removes the temporary work directory (nftw, not std::filesystem::remove_all: see tests/test_data.h).
void remove_tree(const std::string& path);
// This program again with --child TASK --child-k K; its JSON.
json run_child(const BenchArgs& args, const std::string& task, int k);
// The reference input: each group's full-mode windows (ids; token types and masks follow from them).
std::string write_reference_input(const BenchArgs& args, const Workload& w, const Model& model);
// benchmarks/reference_bench.py; {"available": false, "reason"} when it cannot run.
json run_reference(const BenchArgs& args, const std::string& kind, const std::string& input);

// The report (report.cpp).
// A measurement's round of median questions/s, with every round's rate.
json median_round(const std::vector<json>& rounds);
// report["runs"], ["references"] and ["ratios"] from every measurement's rounds ([measurement][round]).
void add_runs_and_ratios(json& report, const std::vector<std::vector<json>>& runs,
                         const std::vector<std::vector<json>>& references, int rounds);
void print_table(const json& r, std::ostream& os);

}  // namespace deformer::bench
