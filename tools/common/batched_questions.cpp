#include "batched_questions.h"

#include <stdexcept>

namespace deformer::cli {

std::vector<std::vector<Answer>> answer_together(const Reader& reader, const CorpusSource* corpus,
                                                 const std::vector<BatchedQuestion>& questions) {
  std::vector<std::vector<Answer>> answers(questions.size());
  std::vector<size_t> raw, named, retrieved;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    if (q.cached && !corpus) throw std::invalid_argument("a question over cached documents needs a cache");
    (!q.cached ? raw : (!q.docs.empty() || !corpus->index) ? named : retrieved).push_back(i);
  }
  if (!raw.empty()) {
    std::vector<Query> queries;
    std::vector<Document> documents;
    for (size_t i : raw) {
      const std::string key = "question-" + std::to_string(i);  // the answers' doc names need not be unique
      queries.push_back({questions[i].question, {key}});
      documents.push_back({key, questions[i].context, ""});
    }
    auto results = reader.ask(queries, documents);
    for (size_t n = 0; n < raw.size(); ++n) {
      for (auto& a : results[n]) a.doc = questions[raw[n]].context_doc;
      answers[raw[n]] = std::move(results[n]);
    }
  }
  if (!named.empty()) {
    std::vector<Query> queries;
    for (size_t i : named) queries.push_back({questions[i].question, questions[i].docs});
    auto results = reader.ask(queries, *corpus->cache);
    for (size_t n = 0; n < named.size(); ++n) answers[named[n]] = std::move(results[n]);
  }
  if (!retrieved.empty()) {
    std::vector<std::string> texts;
    for (size_t i : retrieved) texts.push_back(questions[i].question);
    auto results = retrieval::retrieve_and_read(reader, *corpus->index, *corpus->cache, texts, corpus->retrieval);
    for (size_t n = 0; n < retrieved.size(); ++n) answers[retrieved[n]] = std::move(results[n]);
  }
  return answers;
}

}  // namespace deformer::cli
