// deformer-qa eval: answers every question of a SQuAD file with the reader and scores the predictions.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <unistd.h>

#include "commands.h"
#include "open_eval.h"
#include "options.h"
#include "deformer/cache.h"
#include "deformer/squad.h"

namespace deformer::cli {
namespace {

struct EvalArgs {
  ModelArgs model;
  ReaderArgs reader;
  std::string squad;
  std::string out;
  std::string cache;
  bool resident = false;
  size_t limit = 0;
  int n_best_size = 20;
  int max_answer_length = 30;
  double null_threshold = 0.0;
  bool json = false;
  bool open = false;
  OpenEvalOptions open_options;
};

void write_json_atomically(const nlohmann::json& j, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
    out << j.dump() << "\n";
    if (!out) throw std::runtime_error("error writing '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "'");
}

// {question id: answer}, the predictions file `deformer-qa score` and the official scripts read.
void write_predictions(const squad::Predictions& predictions, const std::string& path) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [id, text] : predictions) j[id] = text;
  write_json_atomically(j, path);
}

}  // namespace

// A cache answers for a SQuAD file only when it holds every paragraph of it with the same text: one built from
// another version of the file would answer from old paragraphs (exit 0, wrong scores).
void require_same_paragraphs(const cache::CacheReader& cache, const std::string& cache_path,
                             const squad::Dataset& dataset, const std::string& squad_path) {
  for (size_t a = 0; a < dataset.articles.size(); ++a)
    for (size_t p = 0; p < dataset.articles[a].paragraphs.size(); ++p) {
      const std::string id = squad::paragraph_id(dataset.articles[a], a, p);
      const auto hint = " (rebuild it: deformer-cache build --input " + squad_path + ")";
      int64_t index = -1;
      try {
        index = cache.find(id);
      } catch (const std::invalid_argument&) {
        throw std::runtime_error("cache '" + cache_path + "' was not built from '" + squad_path + "': it lacks paragraph '" +
                                 id + "'" + hint);
      }
      if (cache.document_text(index) != dataset.articles[a].paragraphs[p].context)
        throw std::runtime_error("cache '" + cache_path + "' was built from another version of '" + squad_path +
                                 "': the text of paragraph '" + id + "' differs" + hint);
    }
}

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Answer every question of a SQuAD v1.1/v2.0 file and print EM/F1 "
                                         "(SQuAD logit-sum decoding: n-best starts and ends, null threshold for v2.0)");
  add_model_options(cmd, args->model);
  add_reader_options(cmd, args->reader, /*pipeline_decoding=*/false);
  cmd->add_option("--squad", args->squad, "SQuAD JSON file (plain, not zipped)")->required();
  cmd->add_option("--out", args->out, "write predictions {id: answer} here (atomically)");
  cmd->add_option("--cache", args->cache, "read the paragraphs' states from this cache (deformer-cache build --input "
                                          "the same file)");
  cmd->add_flag("--resident", args->resident, "hold the cache's states on the model's device (GPU memory: the cache's "
                                              "states in the compute dtype) instead of reading them per paragraph");
  cmd->add_option("--limit", args->limit, "answer only the first N paragraphs (0: all)");
  cmd->add_option("--n-best-size", args->n_best_size, "starts and ends considered per window")->capture_default_str();
  cmd->add_option("--max-answer-length", args->max_answer_length, "longest answer in tokens")->capture_default_str();
  cmd->add_option("--null-threshold", args->null_threshold, "v2.0: answer empty when null - best exceeds this")->capture_default_str();
  cmd->add_flag("--json", args->json, "print the scores as JSON");
  cmd->add_flag("--open", args->open, "open-corpus QA: each question over the documents the --cache's retrieval "
                                      "index finds for it, not over its own paragraph; also reports recall@k");
  cmd->add_option("--retrieve", args->open_options.documents, "--open: documents retrieved and read per question")
      ->capture_default_str();
  cmd->add_option("--reader-weight", args->open_options.reader_weights,
                  "--open: weight(s) of the reader's logits against BM25; several are scored from the same reads")
      ->capture_default_str();
  cmd->add_option("--every", args->open_options.every, "--open: questions of every n-th paragraph only (a sample)")
      ->capture_default_str();
  cmd->callback([args] {
    refuse_output_over_inputs("--out", args->out, {args->squad, args->model.model, args->cache});
    const auto dataset = squad::read_dataset(args->squad);
    auto options = reader_options(args->reader);
    options.k = split_for_cache(options.k, args->cache);
    options.decode.decoding = Decoding::kSquad;
    options.decode.n_best_size = args->n_best_size;
    options.decode.max_answer_length = args->max_answer_length;
    options.decode.version_2_with_negative = dataset.is_v2();
    options.decode.null_threshold = args->null_threshold;
    options.decode.top_k = 1;
    size_t warnings = 0;
    options.warn = [&warnings](const std::string&) { ++warnings; };
    auto model = load_model(args->model);
    Reader reader(model, options);
    const auto cache = open_cache(args->cache, *model, reader);
    if (args->resident && !cache) throw CLI::ValidationError("--resident", "--resident needs --cache");
    if (args->open) {
      if (!cache) throw CLI::ValidationError("--open", "--open needs --cache (a cache of the whole corpus)");
      args->open_options.limit = args->limit;
      squad::Predictions predictions;
      const auto result = evaluate_open(reader, *cache, args->cache, dataset, args->open_options, predictions);
      if (!args->out.empty()) write_predictions(predictions, args->out);
      std::cout << result.dump(args->json ? -1 : 1) << std::endl;
      return;
    }
    if (cache) require_same_paragraphs(*cache, args->cache, dataset, args->squad);
    std::unique_ptr<ResidentCache> resident;
    if (args->resident) resident = std::make_unique<ResidentCache>(*cache, model);

    size_t paragraphs = 0, total = 0;
    for (const auto& a : dataset.articles) paragraphs += a.paragraphs.size();
    if (args->limit) paragraphs = std::min(paragraphs, args->limit);
    const bool progress = isatty(fileno(stderr));
    const auto begin = std::chrono::steady_clock::now();
    squad::Predictions predictions;
    size_t done = 0, answered = 0;
    for (size_t a = 0; a < dataset.articles.size(); ++a)
      for (size_t p = 0; p < dataset.articles[a].paragraphs.size(); ++p) {
        const auto& paragraph = dataset.articles[a].paragraphs[p];
        if (done == paragraphs) break;
        std::vector<std::string> questions;
        for (const auto& q : paragraph.questions) questions.push_back(q.question);
        const std::string id = squad::paragraph_id(dataset.articles[a], a, p);
        std::vector<Query> queries;
        if (resident)
          for (const auto& q : questions) queries.push_back({q, {id}});
        const auto answers = resident ? reader.ask(queries, *resident)
                             : cache  ? reader.ask(questions, *cache, {id})
                                      : reader.ask(questions, {{"context", paragraph.context}});
        for (size_t i = 0; i < questions.size(); ++i)
          predictions[paragraph.questions[i].id] = answers[i].empty() ? "" : answers[i].front().answer;
        answered += questions.size();
        ++done;
        if (progress) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
          std::fprintf(stderr, "\r%zu/%zu paragraphs, %zu questions, %.1f questions/s, ETA %.0f s   ", done, paragraphs,
                       answered, answered / s, s / done * (paragraphs - done));
        }
      }
    if (progress) std::fputc('\n', stderr);
    total = answered;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    if (!args->out.empty()) write_predictions(predictions, args->out);
    squad::Dataset scored = dataset;
    if (args->limit) {  // score only what was answered
      size_t kept = 0;
      for (auto& a : scored.articles) {
        std::vector<squad::Paragraph> keep;
        for (auto& p : a.paragraphs)
          if (kept++ < paragraphs) keep.push_back(std::move(p));
        a.paragraphs = std::move(keep);
      }
    }
    const auto result = squad::evaluate(scored, predictions);
    if (args->json) {
      std::cout << squad::to_json(result, -1) << std::endl;
    } else {
      std::cout << squad::to_text(result);
      std::cout << "answered " << total << " questions in " << seconds << " s (" << total / seconds << " questions/s), mode "
                << to_string(reader.options().mode)
                << (reader.options().mode == Mode::kDeformer ? " k=" + std::to_string(reader.split_layer()) : "") << std::endl;
    }
    if (warnings) std::cerr << warnings << " questions were cut to the question block" << std::endl;
  });
}

}  // namespace deformer::cli
