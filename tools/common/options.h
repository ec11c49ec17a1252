#pragma once
// Options and helpers shared by the deformer-qa subcommands.
#include <CLI/CLI.hpp>

#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deformer/cache.h"
#include "deformer/model.h"
#include "deformer/reader.h"

namespace deformer::cli {

struct ModelArgs {
  std::string model;          // model file (default: bundled_model_path())
  std::string device = "cpu";  // cpu or cuda
  std::string dtype = "fp32";  // fp32, fp16 or bf16
  int threads = 0;             // CPU threads, 0 = all cores
};
// $DEFORMER_MODEL, else the bundled model (installed copy first, then the source tree's models/).
std::string bundled_model_path();
// `dtype_flag` names the compute-dtype option (deformer-cache keeps --dtype for the storage dtype).
void add_model_options(CLI::App* cmd, ModelArgs& args, const std::string& dtype_flag = "--dtype");
std::shared_ptr<const Model> load_model(const ModelArgs& args);
// --threads as given, or the number of cores, with a warning, when it asks for more (0 stays "all cores").
int thread_count(int requested);

struct ReaderArgs {
  std::string mode = "deformer";
  int k = -1;
  int top_k = 1;
  int max_answer_len = 15;
  bool handle_impossible_answer = false;
  int batch_size = 32;
  int64_t max_document_tokens = 100000;
};
// pipeline_decoding false leaves out --top-k, --max-answer-len and --handle-impossible-answer, for commands that
// decode with SQuAD's own rules (eval), which would otherwise accept and ignore them.
void add_reader_options(CLI::App* cmd, ReaderArgs& args, bool pipeline_decoding = true);
ReaderOptions reader_options(const ReaderArgs& args);
// The split to read a cache at: `k` when given (a cache of another k is then refused on open), else, with a cache,
// the k it was built at, so that `--k` need not be repeated; without a cache, `k` as is.
int split_for_cache(int k, const std::string& cache_path);
// The cache at `path` opened for `reader` (null for ""): refused, naming the field, when another model, k or tokenizer
// made it.
std::unique_ptr<cache::CacheReader> open_cache(const std::string& path, const Model& model, const Reader& reader);

nlohmann::json to_json(const Answer& answer);

// Prints an object of facts (the info commands): one JSON line, or "key: value" lines for people.
void print_facts(const nlohmann::json& facts, bool as_json);

// Calls `line` for each non-blank JSONL line of `in` with the parsed value and its place ("name:number"), so
// that errors can name it; a line that is not JSON throws std::invalid_argument naming the place.
void for_each_json_line(std::istream& in, const std::string& name,
                        const std::function<void(const nlohmann::json&, const std::string&)>& line);
// At most the first 200 bytes of `message` (an exception's text can quote a whole input line: a 200 MB line made
// a 209 MB error message), with "..." where it was cut.
std::string brief(const std::string& message);

// Whole file as a string; std::runtime_error naming the path when it cannot be read.
std::string read_file(const std::string& path);

// Throws std::invalid_argument when `output` is the same file as one of `inputs` (the same device and inode, so
// links and other spellings of the path count), before anything is written: the tools write a temporary file and
// rename it over the output, which would replace that input. Inputs that do not exist, "" and "-" are skipped.
void refuse_output_over_inputs(const std::string& option, const std::string& output,
                               const std::vector<std::string>& inputs);

}  // namespace deformer::cli
