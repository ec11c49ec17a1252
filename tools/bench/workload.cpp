// The workload: SQuAD dev questions spread over the file, each over its own paragraph, and their shapes in both
// layouts.
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>

#include "bench.h"
#include "deformer/layout.h"
#include "deformer/squad.h"
#include "deformer/tokenizer.h"

namespace deformer::bench {

std::string default_squad() {
  const char* data = std::getenv("DEFORMER_DATA");
  if (!data || !*data) return "";
  return std::string(data) + "/squad/dev-v1.1.json";
}

Workload read_workload(const BenchArgs& args) {
  const std::string path = args.squad.empty() ? default_squad() : args.squad;
  if (path.empty()) throw std::invalid_argument("give --squad dev-v1.1.json (or set DEFORMER_DATA)");
  if (!std::ifstream(path).good())
    throw std::runtime_error("cannot read SQuAD file '" + path + "'" +
                             (args.squad.empty() ? " (from DEFORMER_DATA; unzip squad/dev-v1.1.json.zip there or pass --squad)" : ""));
  const auto dataset = squad::read_dataset(path);
  // Questions spread over the whole file, each from another paragraph while there are paragraphs enough (the
  // r-th question of every paragraph in round r): SQuAD's paragraph lengths as they come, not the first article's.
  struct Place {
    size_t article, paragraph;
  };
  std::vector<Place> paragraphs;
  for (size_t a = 0; a < dataset.articles.size(); ++a)
    for (size_t p = 0; p < dataset.articles[a].paragraphs.size(); ++p) paragraphs.push_back({a, p});
  if (paragraphs.empty()) throw std::invalid_argument("'" + path + "' has no paragraphs");
  Workload w;
  std::map<size_t, size_t> context_of;  // paragraph -> index into w.contexts
  const size_t per_round = std::min(args.limit, paragraphs.size());
  for (size_t round = 0; w.questions.size() < args.limit; ++round) {
    bool any = false;
    for (size_t i = 0; i < per_round && w.questions.size() < args.limit; ++i) {
      const size_t p = i * paragraphs.size() / per_round;
      const auto& article = dataset.articles[paragraphs[p].article];
      const auto& paragraph = article.paragraphs[paragraphs[p].paragraph];
      if (round >= paragraph.questions.size()) continue;
      any = true;
      if (!context_of.count(p)) {
        context_of[p] = w.contexts.size();
        w.contexts.push_back({squad::paragraph_id(article, paragraphs[p].article, paragraphs[p].paragraph), paragraph.context, ""});
      }
      w.questions.push_back({paragraph.questions[round].question, w.contexts[context_of[p]].id, context_of[p]});
    }
    if (!any) break;
  }
  if (w.questions.empty()) throw std::invalid_argument("'" + path + "' has no questions");
  return w;
}

std::vector<QuestionShape> shapes_of(const Workload& w, const Model& model, const Tokenizer& tokenizer) {
  const auto& c = model.config();
  const auto& special = tokenizer.special_tokens();
  std::vector<std::vector<int64_t>> context_ids;
  for (const auto& d : w.contexts) {
    auto enc = tokenizer.encode(d.text);
    context_ids.emplace_back(enc.ids.begin(), enc.ids.end());
  }
  std::vector<QuestionShape> shapes;
  for (const auto& q : w.questions) {
    QuestionShape s;
    auto enc = tokenizer.encode(q.text);
    std::vector<int64_t> qi(enc.ids.begin(), enc.ids.end());
    s.question_tokens = qi.size();
    const auto& ids = context_ids[q.paragraph];
    for (const auto& span : document_windows(ids.size(), c.document_block - 1, c.window_stride))
      s.deformer_window_rows.push_back(span.end - span.begin + 1);
    // The reader's full-mode windowing (Hugging Face's): the question cut to max_question_len, windows as long
    // as max_seq_len allows, overlapping by doc_stride.
    if (qi.size() > size_t(c.max_question_len)) qi.resize(c.max_question_len);
    const int window = c.max_seq_len - int(qi.size()) - 3;
    for (const auto& span : document_windows(ids.size(), window, window - c.doc_stride)) {
      std::vector<int64_t> tokens(ids.begin() + span.begin, ids.begin() + span.end);
      const int length = int(qi.size() + tokens.size() + 3);
      s.full_rows.push_back(full_block(qi, tokens, length, c.max_question_len, special).input_ids);
    }
    shapes.push_back(std::move(s));
  }
  return shapes;
}

std::vector<std::vector<size_t>> group_questions(const std::vector<QuestionShape>& shapes, int batch) {
  std::vector<std::vector<size_t>> groups;
  int64_t filled = 0;
  for (size_t q = 0; q < shapes.size(); ++q) {
    const int64_t n = shapes[q].deformer_window_rows.size();
    if (groups.empty() || filled + n > batch) {
      groups.emplace_back();
      filled = 0;
    }
    groups.back().push_back(q);
    filled += n;
  }
  return groups;
}

}  // namespace deformer::bench
