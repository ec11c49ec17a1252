#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "batched_questions.h"
#include "commands.h"
#include "deformer/cache.h"
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

// One JSONL line of --questions, checked: {"id", "question", "context"}, or with a cache {"id", "question", "doc"?}
// (no "doc": the documents retrieval finds). Answers over a line's context name the line's id as their doc.
struct QuestionLine {
  std::string id;
  BatchedQuestion question;
};

QuestionLine parse_question_line(const nlohmann::json& j, const std::string& where, size_t number, bool have_cache) {
  if (!j.is_object() || !j.contains("question") || !j["question"].is_string())
    throw std::invalid_argument(where + ": expected an object with a string \"question\"");
  QuestionLine line;
  auto& q = line.question;
  const bool named = j.contains("doc") && j["doc"].is_string();
  if (named && !have_cache) throw std::invalid_argument(where + ": \"doc\" names a cached document: give --cache");
  q.cached = named || (have_cache && !j.contains("context"));
  if (!q.cached && (!j.contains("context") || !j["context"].is_string()))
    throw std::invalid_argument(where + ": expected a string \"context\"" + (have_cache ? "" : " or \"doc\""));
  line.id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump()) : std::to_string(number);
  q.question = j["question"];
  if (named) q.docs = {j["doc"].get<std::string>()};
  if (!q.cached) {
    q.context = j["context"];
    q.context_doc = line.id;
  }
  return line;
}

// --questions: lines are answered kLinesPerCall at a time; a bad line stops the command after the lines before it
// are answered and printed.
void answer_lines(const Reader& reader, const CorpusSource* corpus, std::istream& in, const std::string& name) {
  constexpr size_t kLinesPerCall = 64;
  std::vector<QuestionLine> pending;
  std::vector<std::string> places;
  const auto flush = [&] {
    if (pending.empty()) return;
    const auto print = [&](size_t i, const std::vector<Answer>& answers) {
      nlohmann::json out = {{"id", pending[i].id}, {"answers", nlohmann::json::array()}};
      for (const auto& a : answers) out["answers"].push_back(to_json(a));
      std::cout << out.dump() << "\n";
    };
    std::vector<BatchedQuestion> questions;
    for (const auto& line : pending) questions.push_back(line.question);
    std::vector<std::vector<Answer>> answers;
    try {
      answers = answer_together(reader, corpus, questions);
    } catch (const std::invalid_argument&) {
      // Answered one at a time, the first line that fails is named, after the lines before it are printed.
      for (size_t i = 0; i < pending.size(); ++i) {
        try {
          print(i, answer_together(reader, corpus, {questions[i]}).front());
        } catch (const std::invalid_argument& e) {
          std::cout.flush();
          throw std::invalid_argument(places[i] + ": " + e.what());
        }
      }
      answers.clear();
    }
    for (size_t i = 0; i < answers.size(); ++i) print(i, answers[i]);
    std::cout.flush();
    pending.clear();
    places.clear();
  };
  size_t number = 0;
  try {
    for_each_json_line(in, name, [&](const nlohmann::json& j, const std::string& where) {
      pending.push_back(parse_question_line(j, where, ++number, corpus != nullptr));
      places.push_back(where);
      if (pending.size() == kLinesPerCall) flush();
    });
  } catch (const std::invalid_argument&) {
    flush();  // the lines before the bad one
    throw;
  }
  flush();
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
    std::unique_ptr<retrieval::TextIndex> index;
    if (cache) {
      corpus = std::make_unique<CorpusSource>();
      corpus->cache = cache.get();
      corpus->retrieval = args->retrieval;
      const bool retrieve_documents = args->retrieval.documents > 0;
      if (retrieve_documents) retrieval::validate(args->retrieval);
      if (args->docs.empty()) index = open_index(args->cache, *cache, retrieve_documents, retrieve->count() > 0);
      corpus->index = index.get();
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
      BatchedQuestion question;
      question.question = args->question;
      question.cached = true;
      question.docs = args->docs;
      const auto answers = answer_together(reader, corpus.get(), {question}).front();
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
