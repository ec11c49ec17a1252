// deformer-qa eval --open: SQuAD questions against a whole corpus cache, through its retrieval index (open-domain
// SQuAD, as BERTserini and DrQA evaluate): EM/F1 for each reader weight, and the retriever's recall@k.
#include "open_eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "deformer/cache.h"
#include "deformer/retrieval.h"

namespace deformer::cli {
namespace {

struct Sampled {
  squad::Dataset dataset;            // the sampled paragraphs only, for scoring
  std::vector<std::string> ids;      // question ids
  std::vector<std::string> texts;    // question texts
  std::vector<std::string> gold;     // the paragraph id each question was written about
};

// Every `every`-th paragraph (a sample spread over the articles), at most `limit` of them (0: no limit).
Sampled sample(const squad::Dataset& dataset, size_t every, size_t limit) {
  Sampled s;
  s.dataset.version = dataset.version;
  size_t seen = 0, kept = 0;
  for (size_t a = 0; a < dataset.articles.size(); ++a) {
    squad::Article article = dataset.articles[a];
    article.paragraphs.clear();
    for (size_t p = 0; p < dataset.articles[a].paragraphs.size(); ++p) {
      if (seen++ % every != 0 || (limit && kept == limit)) continue;
      ++kept;
      const auto& paragraph = dataset.articles[a].paragraphs[p];
      for (const auto& q : paragraph.questions) {
        s.ids.push_back(q.id);
        s.texts.push_back(q.question);
        s.gold.push_back(squad::paragraph_id(dataset.articles[a], a, p));
      }
      article.paragraphs.push_back(paragraph);
    }
    if (!article.paragraphs.empty()) s.dataset.articles.push_back(std::move(article));
  }
  return s;
}

}  // namespace

nlohmann::json evaluate_open(const Reader& reader, const cache::CacheReader& cache, const std::string& cache_path,
                             const squad::Dataset& dataset, const OpenEvalOptions& o, squad::Predictions& first) {
  if (o.every < 1) throw std::invalid_argument("--every must be at least 1");
  if (o.reader_weights.empty()) throw std::invalid_argument("give at least one --reader-weight");
  for (double w : o.reader_weights) retrieval::validate({o.documents, w});
  const auto index = retrieval::TextIndex::open(retrieval::index_path(cache_path), cache);
  const Sampled s = sample(dataset, o.every, o.limit);
  for (const auto& gold : s.gold) cache.find(gold);  // the corpus must hold every question's own paragraph

  constexpr size_t kBatch = 64;  // questions per batched read: a few thousand (question, document) pairs
  std::vector<int> depths = {1, 5, 20, 100};  // and the number retrieved itself: what the reader could see
  if (std::find(depths.begin(), depths.end(), o.documents) == depths.end()) depths.push_back(o.documents);
  std::sort(depths.begin(), depths.end());
  std::vector<size_t> found(depths.size(), 0);
  std::vector<squad::Predictions> predictions(o.reader_weights.size());
  squad::Predictions oracle;  // each question over its own paragraph only: today's closed eval, on the same sample
  double retrieval_seconds = 0;
  const bool progress = isatty(fileno(stderr));
  const auto begin = std::chrono::steady_clock::now();
  auto since = [](auto start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (size_t first_q = 0; first_q < s.texts.size(); first_q += kBatch) {
    const size_t last_q = std::min(first_q + kBatch, s.texts.size());
    const std::vector<std::string> questions(s.texts.begin() + first_q, s.texts.begin() + last_q);
    const auto searched = std::chrono::steady_clock::now();
    const auto hits = retrieval::retrieve(*index, questions, o.documents);
    retrieval_seconds += since(searched);
    const auto answers = retrieval::read_retrieved(reader, cache, questions, hits);
    std::vector<Query> own;
    for (size_t q = first_q; q < last_q; ++q) own.push_back({s.texts[q], {s.gold[q]}});
    const auto own_answers = reader.ask(own, cache);
    for (size_t i = 0; i < questions.size(); ++i) {
      const size_t q = first_q + i;
      for (size_t d = 0; d < depths.size(); ++d)
        for (size_t h = 0; h < hits[i].size() && h < static_cast<size_t>(depths[d]); ++h)
          if (hits[i][h].id == s.gold[q]) {
            ++found[d];
            break;
          }
      oracle[s.ids[q]] = own_answers[i].empty() ? "" : own_answers[i].front().answer;
      for (size_t w = 0; w < o.reader_weights.size(); ++w) {
        const auto ranked = retrieval::rank_answers(answers[i], o.reader_weights[w], 1);
        predictions[w][s.ids[q]] = ranked.empty() ? "" : ranked.front().answer;
      }
    }
    if (progress)
      std::fprintf(stderr, "\r%zu/%zu questions, %.1f questions/s   ", last_q, s.texts.size(), last_q / since(begin));
  }
  if (progress) std::fputc('\n', stderr);
  const double seconds = since(begin);

  nlohmann::json result = {{"questions", s.texts.size()},
                           {"paragraphs_sampled_every", o.every},
                           {"corpus_documents", cache.num_documents()},
                           {"retrieve", o.documents},
                           {"seconds", seconds},
                           {"retrieval_seconds", retrieval_seconds},
                           {"questions_per_second", s.texts.size() / std::max(seconds, 1e-9)}};
  nlohmann::json recall = nlohmann::json::object();
  for (size_t d = 0; d < depths.size(); ++d)
    if (depths[d] <= o.documents) recall[std::to_string(depths[d])] = 100.0 * found[d] / std::max<size_t>(s.texts.size(), 1);
  result["recall"] = recall;
  const auto closed = squad::evaluate(s.dataset, oracle);
  result["oracle_paragraph"] = {{"exact_match", closed.overall.exact}, {"f1", closed.overall.f1}};
  result["by_reader_weight"] = nlohmann::json::array();
  for (size_t w = 0; w < o.reader_weights.size(); ++w) {
    const auto scored = squad::evaluate(s.dataset, predictions[w]);
    result["by_reader_weight"].push_back(
        {{"reader_weight", o.reader_weights[w]}, {"exact_match", scored.overall.exact}, {"f1", scored.overall.f1}});
  }
  first = predictions.front();
  return result;
}

}  // namespace deformer::cli
