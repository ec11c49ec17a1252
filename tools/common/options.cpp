#include "options.h"

#include "deformer/cache.h"
#include "deformer/cache_builder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace deformer::cli {

std::string bundled_model_path() {
  if (const char* chosen = std::getenv("DEFORMER_MODEL"); chosen && *chosen) return chosen;
  // An installed copy first; a build tree runs next to its sources.
  if (std::ifstream(DEFORMER_BUNDLED_MODEL_INSTALLED).good()) return DEFORMER_BUNDLED_MODEL_INSTALLED;
  return DEFORMER_BUNDLED_MODEL_SOURCE;
}

void add_model_options(CLI::App* cmd, ModelArgs& args, const std::string& dtype_flag) {
  args.model = bundled_model_path();
  cmd->add_option("--model", args.model,
                  "model file written by deformer-export (default: $DEFORMER_MODEL, else the bundled "
                  "models/squad-minilm.pt)");
  cmd->add_option("--device", args.device, "cpu or cuda")->capture_default_str();
  cmd->add_option(dtype_flag, args.dtype, "compute dtype: fp32, fp16 or bf16")->capture_default_str();
  cmd->add_option("--threads", args.threads, "CPU threads (0: all cores)")->capture_default_str();
}

int thread_count(int requested) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (requested <= cores) return requested;
  // More threads than cores only contend: 1000 threads ran 30 times slower than 2 on two cores.
  std::cerr << "warning: --threads " << requested << " is more than the " << cores << " cores here; using " << cores
            << std::endl;
  return cores;
}

std::shared_ptr<const Model> load_model(const ModelArgs& args) {
  LoadOptions options;
  options.device = parse_device(args.device);
  options.dtype = parse_dtype(args.dtype);
  options.threads = thread_count(args.threads);
  return Model::load(args.model, options);
}

void add_reader_options(CLI::App* cmd, ReaderArgs& args, bool pipeline_decoding) {
  cmd->add_option("--mode", args.mode, "deformer (decomposed) or full (standard BERT)")->capture_default_str();
  cmd->add_option("--k", args.k, "split layer in deformer mode (-1: with --cache the cache's, else the model's trained split, else 3/4 of the layers)")->capture_default_str();
  if (pipeline_decoding) {
    cmd->add_option("--top-k", args.top_k, "answers per question")->capture_default_str();
    cmd->add_option("--max-answer-len", args.max_answer_len, "longest answer in tokens")->capture_default_str();
    cmd->add_flag("--handle-impossible-answer", args.handle_impossible_answer, "allow the empty answer");
  }
  cmd->add_option("--batch-size", args.batch_size, "windows per forward pass")->capture_default_str();
  cmd->add_option("--max-document-tokens", args.max_document_tokens,
                  "refuse longer documents given as text (their windows are held at once; 0: no limit)")
      ->capture_default_str();
}

ReaderOptions reader_options(const ReaderArgs& args) {
  ReaderOptions o;
  o.mode = parse_mode(args.mode);
  o.k = args.k;
  o.batch_size = args.batch_size;
  o.max_document_tokens = args.max_document_tokens;
  o.decode.top_k = args.top_k;
  o.decode.max_answer_len = args.max_answer_len;
  o.decode.handle_impossible_answer = args.handle_impossible_answer;
  return o;
}

std::unique_ptr<cache::CacheReader> open_cache(const std::string& path, const Model& model, const Reader& reader) {
  if (path.empty()) return nullptr;
  return cache::CacheReader::open(path, expected_cache_metadata(model, reader.split_layer()));
}

int split_for_cache(int k, const std::string& cache_path) {
  if (k != -1 || cache_path.empty()) return k;
  return cache::CacheReader::open(cache_path)->metadata().k;
}

nlohmann::json to_json(const Answer& a) {
  nlohmann::json j = {{"answer", a.answer}, {"score", a.score}, {"start", a.start}, {"end", a.end}, {"doc", a.doc}};
  if (a.retrieval_score) {  // retrieve, then read: score combines these two
    j["reader_logits"] = a.logits;
    j["retrieval_score"] = *a.retrieval_score;
  }
  return j;
}

std::string brief(const std::string& message) {
  constexpr size_t kMax = 200;
  if (message.size() <= kMax) return message;
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
  return message.substr(0, cut) + "...";
}

void for_each_json_line(std::istream& in, const std::string& name,
                        const std::function<void(const nlohmann::json&, const std::string&)>& line) {
  std::string text;
  for (size_t number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(where + ": not valid JSON (" + brief(e.what()) + ")");
    }
    line(j, where);
  }
}

void print_facts(const nlohmann::json& facts, bool as_json) {
  if (as_json) {
    std::cout << facts.dump() << std::endl;
    return;
  }
  for (const auto& [key, value] : facts.items())
    std::cout << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump()) << "\n";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "'");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void refuse_output_over_inputs(const std::string& option, const std::string& output,
                               const std::vector<std::string>& inputs) {
  struct stat out {};
  if (output.empty() || output == "-" || ::stat(output.c_str(), &out) != 0) return;  // a new file is no input
  for (const auto& input : inputs) {
    struct stat in {};
    if (input.empty() || input == "-" || ::stat(input.c_str(), &in) != 0) continue;
    if (in.st_dev == out.st_dev && in.st_ino == out.st_ino)
      throw std::invalid_argument(option + " '" + output + "' is the input '" + input +
                                  "': writing it would destroy that input (choose another output path)");
  }
}

}  // namespace deformer::cli
