#pragma once
// SQuAD data and the official evaluation metrics (docs/design.md, 'SQuAD evaluation'), without torch: the SQuAD
// v1.1 and v2.0 JSON formats as plain structs, prediction and no-answer-probability files, and scores that match
// the official evaluate-v1.1.py and evaluate-v2.0.py scripts to floating-point rounding, Unicode included.
//
// Errors: a file that cannot be read, or whose content is not valid UTF-8, valid JSON or the expected
// layout, throws std::runtime_error naming the file and the place; a bad argument from the caller (an
// invalid option, a string that is not UTF-8) throws std::invalid_argument.
//
// Every function is reentrant (no shared mutable state), so scoring may run on any thread. The Unicode
// tables behind normalize_answer are generated from Python (scripts/unicode/gen_squad_unicode_tables.py), so the
// scores follow the Unicode version of that Python (see src/text/squad_unicode_tables.h).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace deformer::squad {

// ---------------------------------------------------------------------------------------------------
// Data

struct Answer {
  std::string text;
  int64_t answer_start = -1;  // character offset into the context; -1 when the file has none
};

struct Question {
  std::string id;
  std::string question;
  std::vector<Answer> answers;  // empty for a v2.0 unanswerable question
  bool is_impossible = false;   // v2.0 only; false when absent
};

struct Paragraph {
  std::string context;
  std::vector<Question> questions;  // the file's "qas"
};

struct Article {
  std::string title;
  std::vector<Paragraph> paragraphs;
};

struct Dataset {
  std::string version;  // the file's "version" ("1.1", "v2.0"), empty when absent
  std::vector<Article> articles;

  std::size_t num_questions() const;
  // A v2.0 file: its version says 2, or some question carries is_impossible = true.
  bool is_v2() const;
};

// The document id a paragraph gets when a SQuAD file is cached: "<title>#<paragraph index>" (or
// "article-<index>#<paragraph index>" for an untitled article); deformer-cache and deformer-qa agree on it.
std::string paragraph_id(const Article& article, std::size_t article_index, std::size_t paragraph_index);

// Reads a SQuAD v1.1 or v2.0 JSON file (plain JSON, not zipped).
Dataset read_dataset(const std::string& path);
// Parses the same format from memory; `source` names the text in error messages.
Dataset parse_dataset(std::string_view json, const std::string& source = "<memory>");

// Question id -> predicted answer text ("" predicts no answer in v2.0).
using Predictions = std::unordered_map<std::string, std::string>;
Predictions read_predictions(const std::string& path);
Predictions parse_predictions(std::string_view json, const std::string& source = "<memory>");

// Question id -> probability that the question has no answer, in file order: the official threshold
// search sorts stably by probability, so the order of equal probabilities can change its result.
struct NoAnswerProbabilities {
  std::vector<std::pair<std::string, double>> entries;
  std::unordered_map<std::string, std::size_t> index;  // id -> position in entries

  const double* find(const std::string& id) const;
};
NoAnswerProbabilities read_na_probs(const std::string& path);
NoAnswerProbabilities parse_na_probs(std::string_view json, const std::string& source = "<memory>");

// ---------------------------------------------------------------------------------------------------
// Metric building blocks, exactly as the official scripts define them

// Python's s.lower(), then delete string.punctuation (ASCII only), then re.sub(r'\b(a|an|the)\b', ' ', s)
// with Unicode \b, then ' '.join(s.split()) with Unicode whitespace. Throws std::invalid_argument when
// `text` is not UTF-8.
std::string normalize_answer(std::string_view text);
// normalize_answer(text).split().
std::vector<std::string> answer_tokens(std::string_view text);

// v1.1: 1 when the normalised strings are equal.
double exact_match_score(std::string_view prediction, std::string_view gold);
// v1.1: token F1 with multiset overlap; 0 when nothing overlaps (two empty answers included).
double f1_score(std::string_view prediction, std::string_view gold);
// v2.0: as f1_score, except that when either side has no tokens the score is 1 if both have none.
double f1_score_v2(std::string_view prediction, std::string_view gold);

// ---------------------------------------------------------------------------------------------------
// Evaluation

enum class MetricVersion {
  automatic,  // v2.0 when Dataset::is_v2(), else v1.1
  v1_1,
  v2_0,
};

struct EvaluationOptions {
  // Which official script to follow.
  MetricVersion metric = MetricVersion::automatic;
  // v2.0: a question counts as predicted unanswerable when its na_prob exceeds this (--na-prob-thresh of
  // evaluate-v2.0.py; the default 1.0 means never).
  double na_prob_threshold = 1.0;
};

// Percentages (x100) over `total` questions.
struct Score {
  double exact = 0;
  double f1 = 0;
  std::size_t total = 0;
};

// evaluate-v2.0.py's threshold search over the no-answer probabilities.
struct BestThreshold {
  double best_exact = 0;
  double best_exact_thresh = 0;
  double best_f1 = 0;
  double best_f1_thresh = 0;
};

struct EvaluationResult {
  MetricVersion metric = MetricVersion::v1_1;  // the one applied: v1_1 or v2_0
  Score overall;
  std::size_t missing_predictions = 0;  // dataset questions without a prediction (each scores 0)
  std::size_t ignored_predictions = 0;  // prediction ids that are not in the dataset
  // v2.0 only; absent when the dataset has no question of that kind (as in the official script).
  std::optional<Score> has_answer;
  std::optional<Score> no_answer;
  // v2.0 with no-answer probabilities only.
  std::optional<BestThreshold> best;
};

// Scores `predictions` against `dataset`. Follows the official scripts, with one documented extension:
// evaluate-v2.0.py cannot score a file with missing predictions (its breakdown raises KeyError), so
// here, as in v1.1, a missing prediction scores 0 and counts in every total, and the threshold search
// treats it as scoring 0 whatever the threshold. With complete predictions the results are the official
// ones. `na_probs` (v2.0 only) must cover every predicted dataset question (std::invalid_argument
// otherwise, like the official KeyError). The v1.1 metric needs at least one gold answer per question.
EvaluationResult evaluate(const Dataset& dataset, const Predictions& predictions,
                          const NoAnswerProbabilities* na_probs = nullptr, const EvaluationOptions& options = {});

// What `deformer-qa score` runs: reads the three files (na_prob_path empty: none) and evaluates.
EvaluationResult evaluate_files(const std::string& dataset_path, const std::string& predictions_path,
                                const std::string& na_prob_path = "", const EvaluationOptions& options = {});

// The official scripts' JSON ({"exact_match", "f1"} for v1.1; "exact", "f1", "total", "HasAns_*",
// "NoAns_*", "best_*" for v2.0), plus "total", "missing_predictions" and "ignored_predictions".
std::string to_json(const EvaluationResult& result, int indent = 2);
// A few human-readable lines with three decimals.
std::string to_text(const EvaluationResult& result);

}  // namespace deformer::squad
