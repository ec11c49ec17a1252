#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.h"
#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/retrieval.h"
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
  retrieval::RetrievalOptions retrieval;
  bool timing = false;
};

// What a question over a cache is read against: the documents it names, else those the cache's retrieval index
// finds for it, else (no index, or --retrieve 0) every cached document.
struct CorpusSource {
  const cache::CacheReader* cache = nullptr;
  std::unique_ptr<retrieval::TextIndex> index;
  retrieval::RetrievalOptions retrieval;

  std::vector<Answer> ask(const Reader& reader, const std::string& question,
                          const std::vector<std::string>& docs) const {
    if (!docs.empty() || !index) return reader.ask({question}, *cache, docs).front();
    return retrieval::retrieve_and_read(reader, *index, *cache, {question}, retrieval).front();
  }
};

// The index beside `path`, unless retrieval is off; without one, questions are read against every document, which a
// note says once (a large cache then takes long).
std::unique_ptr<retrieval::TextIndex> open_index(const std::string& path, const cache::CacheReader& cache,
                                                 bool retrieve, bool asked_for) {
  if (!retrieve) return nullptr;
  try {
    return retrieval::TextIndex::open(retrieval::index_path(path), cache);
  } catch (const std::runtime_error& e) {
    if (asked_for) throw std::runtime_error(std::string("--retrieve needs the cache's retrieval index: ") + e.what());
    std::cerr << "deformer-qa: " << e.what() << "\ndeformer-qa: reading all " << cache.num_documents()
              << " cached documents instead (--doc chooses some)" << std::endl;
    return nullptr;
  }
}

// The cache opened for this reader: refused, naming the field, when another model, k or tokenizer made it.
std::unique_ptr<cache::CacheReader> open_cache(const std::string& path, const Model& model, const Reader& reader) {
  if (path.empty()) return nullptr;
  return cache::CacheReader::open(path, expected_cache_metadata(model, reader.split_layer()));
}

// One JSONL line of --questions: {"id", "question", "context"}, or with a cache {"id", "question", "doc"?} (no
// "doc": the documents retrieval finds).
void answer_lines(const Reader& reader, const CorpusSource* corpus, std::istream& in, const std::string& name) {
  size_t number = 0;
  for_each_json_line(in, name, [&](const nlohmann::json& j, const std::string& where) {
    ++number;
    if (!j.is_object() || !j.contains("question") || !j["question"].is_string())
      throw std::invalid_argument(where + ": expected an object with a string \"question\"");
    const bool named = j.contains("doc") && j["doc"].is_string();
    if (named && !corpus) throw std::invalid_argument(where + ": \"doc\" names a cached document: give --cache");
    const bool cached = named || (corpus && !j.contains("context"));
    if (!cached && (!j.contains("context") || !j["context"].is_string()))
      throw std::invalid_argument(where + ": expected a string \"context\"" + (corpus ? "" : " or \"doc\""));
    const std::string id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()) : std::to_string(number);
    std::vector<Answer> answers;
    try {
      const std::string question = j["question"];
      answers = cached ? corpus->ask(reader, question, named ? std::vector<std::string>{j["doc"].get<std::string>()}
                                                             : std::vector<std::string>{})
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
  auto* cache = cmd->add_option("--cache", args->cache, "a cache from deformer-cache build (deformer mode): without --doc, "
                                                      "a question is read over the documents its retrieval index finds");
  cmd->add_option("--doc", args->docs, "cached document id(s) to read (with --cache)");
  auto* retrieve = cmd->add_option("--retrieve", args->retrieval.documents,
                                   "documents retrieved (BM25) and read per question over a cache; 0: read every "
                                   "document")->capture_default_str();
  cmd->add_option("--reader-weight", args->retrieval.reader_weight,
                  "weight of the reader's logits against BM25 in the answers' ranking, in [0, 1]")->capture_default_str();
  ctx->excludes(file);
  many->excludes(ctx)->excludes(file);
  cache->excludes(ctx)->excludes(file);
  cmd->add_flag("--timing", args->timing, "print the time taken to stderr");
  cmd->callback([args, retrieve] {
    auto model = load_model(args->model);
    auto options = reader_options(args->reader);
    options.k = split_for_cache(options.k, args->cache);
    Reader reader(model, options);
    const auto cache = open_cache(args->cache, *model, reader);
    if (!args->docs.empty() && !cache) throw CLI::ValidationError("--doc", "--doc needs --cache");
    if (retrieve->count() && !cache) throw CLI::ValidationError("--retrieve", "--retrieve needs --cache");
    std::unique_ptr<CorpusSource> corpus;
    if (cache) {
      corpus = std::make_unique<CorpusSource>();
      corpus->cache = cache.get();
      corpus->retrieval = args->retrieval;
      const bool retrieve_documents = args->retrieval.documents > 0;
      if (retrieve_documents) retrieval::validate(args->retrieval);
      if (args->docs.empty()) corpus->index = open_index(args->cache, *cache, retrieve_documents, retrieve->count() > 0);
    }
    const auto begin = std::chrono::steady_clock::now();
    if (!args->questions.empty()) {
      if (args->questions == "-") {
        answer_lines(reader, corpus.get(), std::cin, "stdin");
      } else {
        std::ifstream in(args->questions);
        if (!in) throw std::runtime_error("cannot read '" + args->questions + "'");
        answer_lines(reader, corpus.get(), in, args->questions);
      }
    } else if (cache) {
      if (args->question.empty()) throw CLI::ValidationError("--question", "give --question (or --questions FILE)");
      const auto answers = corpus->ask(reader, args->question, args->docs);
      if (cache->num_documents() == 0) std::cerr << "deformer-qa: the cache holds no documents: no answers" << std::endl;
      for (const auto& a : answers) std::cout << to_json(a).dump() << "\n";
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
