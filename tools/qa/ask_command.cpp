#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.h"
#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "options.h"

namespace deformer::cli {
namespace {

struct AskArgs {
  ModelArgs model;
  ReaderArgs reader;
  std::string question;
  std::string context;
  std::string context_file;
  std::string questions;
  std::string cache;
  std::vector<std::string> docs;
  bool timing = false;
};

// The cache opened for this reader: refused, naming the field, when another model, k or tokenizer made it.
std::unique_ptr<cache::CacheReader> open_cache(const std::string& path, const Model& model, const Reader& reader) {
  if (path.empty()) return nullptr;
  return cache::CacheReader::open(path, expected_cache_metadata(model, reader.split_layer()));
}

// One JSONL line of --questions: {"id", "question", "context"}, or {"id", "question", "doc"} with a cache.
void answer_lines(const Reader& reader, const cache::CacheReader* cache, std::istream& in, const std::string& name) {
  size_t number = 0;
  for_each_json_line(in, name, [&](const nlohmann::json& j, const std::string& where) {
    ++number;
    if (!j.is_object() || !j.contains("question") || !j["question"].is_string())
      throw std::invalid_argument(where + ": expected an object with a string \"question\"");
    const bool cached = j.contains("doc") && j["doc"].is_string();
    if (cached && !cache) throw std::invalid_argument(where + ": \"doc\" names a cached document: give --cache");
    if (!cached && (!j.contains("context") || !j["context"].is_string()))
      throw std::invalid_argument(where + ": expected a string \"context\" or \"doc\"");
    const std::string id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()) : std::to_string(number);
    std::vector<Answer> answers;
    try {
      const std::string question = j["question"];
      answers = cached ? reader.ask({question}, *cache, {j["doc"].get<std::string>()}).front()
                       : reader.ask(question, {{id, j["context"].get<std::string>()}});
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + ": " + e.what());
    }
    nlohmann::json out = {{"id", id}, {"answers", nlohmann::json::array()}};
    for (const auto& a : answers) out["answers"].push_back(to_json(a));
    std::cout << out.dump() << "\n";
  });
}

}  // namespace

void add_ask_command(CLI::App& app) {
  auto args = std::make_shared<AskArgs>();
  auto* cmd = app.add_subcommand("ask", "Answer questions over raw text and print JSON answers "
                                        "{answer, score, start, end, doc}; start/end are character offsets");
  add_model_options(cmd, args->model);
  add_reader_options(cmd, args->reader);
  cmd->add_option("--question", args->question, "the question");
  auto* ctx = cmd->add_option("--context", args->context, "the document text");
  auto* file = cmd->add_option("--context-file", args->context_file, "a UTF-8 text file holding the document");
  auto* many = cmd->add_option("--questions", args->questions,
                               "JSONL of {\"id\", \"question\", \"context\"} ('-' for stdin); one output line each");
  auto* cache = cmd->add_option("--cache", args->cache, "a cache from deformer-cache build (deformer mode; reads every "
                                                      "document unless --doc is given: fine for small caches)");
  cmd->add_option("--doc", args->docs, "cached document id(s) to read (with --cache)");
  ctx->excludes(file);
  many->excludes(ctx)->excludes(file);
  cache->excludes(ctx)->excludes(file);
  cmd->add_flag("--timing", args->timing, "print the time taken to stderr");
  cmd->callback([args] {
    auto model = load_model(args->model);
    Reader reader(model, reader_options(args->reader));
    const auto cache = open_cache(args->cache, *model, reader);
    if (!args->docs.empty() && !cache) throw CLI::ValidationError("--doc", "--doc needs --cache");
    const auto begin = std::chrono::steady_clock::now();
    if (!args->questions.empty()) {
      if (args->questions == "-") {
        answer_lines(reader, cache.get(), std::cin, "stdin");
      } else {
        std::ifstream in(args->questions);
        if (!in) throw std::runtime_error("cannot read '" + args->questions + "'");
        answer_lines(reader, cache.get(), in, args->questions);
      }
    } else if (cache) {
      if (args->question.empty()) throw CLI::ValidationError("--question", "give --question (or --questions FILE)");
      const auto answers = reader.ask({args->question}, *cache, args->docs);
      if (cache->num_documents() == 0) std::cerr << "deformer-qa: the cache holds no documents: no answers" << std::endl;
      for (const auto& a : answers.front()) std::cout << to_json(a).dump() << "\n";
    } else {
      if (args->question.empty()) throw CLI::ValidationError("--question", "give --question (or --questions FILE)");
      Document doc;
      if (!args->context_file.empty()) {
        doc = {std::filesystem::path(args->context_file).filename().string(), read_file(args->context_file)};
      } else if (!args->context.empty()) {
        doc = {"context", args->context};
      } else {
        throw CLI::ValidationError("--context", "give --context TEXT or --context-file FILE");
      }
      for (const auto& a : reader.ask(args->question, {doc})) std::cout << to_json(a).dump() << "\n";
    }
    if (args->timing) {
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
      std::cerr << "mode " << to_string(reader.options().mode) << (reader.options().mode == Mode::kDeformer ? " k=" + std::to_string(reader.split_layer()) : "")
                << ": " << ms << " ms" << std::endl;
    }
  });
}

}  // namespace deformer::cli
