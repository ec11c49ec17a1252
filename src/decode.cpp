#include "deformer/decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "text/utf8.h"

namespace deformer {
namespace {

struct TokenSpan {
  double score;
  int64_t start;  // logit positions
  int64_t end;
};

// Keeps `best` the n first of everything offered, in `before` order (a strict weak order), an item offered later
// losing ties: what a stable sort of every item cut to n gives, without keeping them all.
template <typename T, typename Before>
void keep_best(std::vector<T>& best, const T& item, size_t n, Before before) {
  if (best.size() == n && !before(item, best.back())) return;
  best.insert(std::upper_bound(best.begin(), best.end(), item, before), item);
  if (best.size() > n) best.pop_back();
}

constexpr auto higher_score = [](const auto& a, const auto& b) { return a.score > b.score; };

// Softmax over the positions that may carry probability: the null position and the context tokens. The
// reference sets every other logit to -10000 first, which gives them exactly zero weight in float32.
std::vector<double> softmax(const float* logits, const WindowScores& w) {
  const size_t n = w.context_token.size();
  double max = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < n; ++i)
    if (w.context_token[i] >= 0 || static_cast<int64_t>(i) == w.null_position) max = std::max(max, double(logits[i]));
  std::vector<double> p(n, 0.0);
  double sum = 0;
  for (size_t i = 0; i < n; ++i)
    if (w.context_token[i] >= 0 || static_cast<int64_t>(i) == w.null_position) sum += p[i] = std::exp(logits[i] - max);
  for (double& v : p) v /= sum;
  return p;
}

// Best spans of one window in the order Hugging Face's decode_spans returns them: by score, ties in
// row-major (start, end) order. Spans are visited in that row-major order, so a candidate enters the kept list
// only when it beats the worst kept one outright; the list stays at most top_k long (no allocation per span).
std::vector<TokenSpan> best_spans(const std::vector<double>& ps, const std::vector<double>& pe, const WindowScores& w,
                                  int top_k, int max_len) {
  std::vector<TokenSpan> best;
  best.reserve(top_k + 1);
  const int64_t n = w.context_token.size();
  for (int64_t s = 0; s < n; ++s) {
    if (w.context_token[s] < 0 || ps[s] == 0.0) continue;
    for (int64_t e = s; e < std::min<int64_t>(n, s + max_len); ++e) {
      if (w.context_token[e] < 0 || pe[e] <= 0.0) continue;
      keep_best(best, TokenSpan{ps[s] * pe[e], s, e}, top_k, higher_score);
    }
  }
  return best;
}

// Character span of each word: from its first token's start to its last token's end.
std::vector<std::pair<int64_t, int64_t>> word_spans(const TokenizedDocument& d) {
  std::vector<std::pair<int64_t, int64_t>> words;
  for (size_t t = 0; t < d.offsets.size(); ++t) {
    const size_t w = d.word_of_token[t];
    if (w >= words.size()) words.resize(w + 1, {std::numeric_limits<int64_t>::max(), 0});
    words[w].first = std::min(words[w].first, d.offsets[t].first);
    words[w].second = std::max(words[w].second, d.offsets[t].second);
  }
  return words;
}

// Pools candidates: merges equal character spans (keeping the best score), sorts by score (stable, so
// earlier windows win ties as in the reference) and cuts to `limit`.
std::vector<Span> merge_and_cut(std::vector<Span> spans, size_t limit) {
  std::vector<Span> merged;
  std::map<std::pair<int64_t, int64_t>, size_t> seen;
  for (const auto& s : spans) {
    auto key = s.null ? std::pair<int64_t, int64_t>{-1, -1} : std::pair{s.start, s.end};
    auto [it, inserted] = seen.emplace(key, merged.size());
    if (inserted) merged.push_back(s);
    else if (s.score > merged[it->second].score) merged[it->second] = s;
  }
  std::stable_sort(merged.begin(), merged.end(), [](const Span& a, const Span& b) { return a.score > b.score; });
  if (merged.size() > limit) merged.resize(limit);
  return merged;
}

std::vector<Span> decode_pipeline(const std::vector<WindowScores>& windows, const TokenizedDocument& document,
                                  const DecodeOptions& o) {
  const auto words = word_spans(document);
  std::vector<Span> spans;
  double null_score = std::numeric_limits<double>::infinity(), null_logits = 0;
  for (const auto& w : windows) {
    auto ps = softmax(w.start_logits, w);
    auto pe = softmax(w.end_logits, w);
    if (ps[w.null_position] * pe[w.null_position] < null_score) {
      null_score = ps[w.null_position] * pe[w.null_position];
      null_logits = double(w.start_logits[w.null_position]) + w.end_logits[w.null_position];
    }
    ps[w.null_position] = pe[w.null_position] = 0.0;
    for (const auto& t : best_spans(ps, pe, w, o.top_k, o.max_answer_len)) {
      const auto& first = words[document.word_of_token[w.context_token[t.start]]];
      const auto& last = words[document.word_of_token[w.context_token[t.end]]];
      spans.push_back({t.score, first.first, last.second, false,
                       double(w.start_logits[t.start]) + w.end_logits[t.end]});
    }
  }
  if (o.handle_impossible_answer && !windows.empty()) spans.push_back({null_score, 0, 0, true, null_logits});
  return merge_and_cut(std::move(spans), o.top_k);
}

// utils_qa ranks every position, padding and question included, and then drops the spans that do not lie in
// the context; a window whose best n_best positions all lie elsewhere then yields no answer at all, and how
// much padding competes depends on the layout. Ranking the context positions only gives the same answers
// whenever enough of the best positions are context, and an answer otherwise.
std::vector<int64_t> best_positions(const float* logits, const WindowScores& w, int n_best) {
  // One pass keeping the best n_best in order (a candidate rarely beats the worst kept one), in the order a full
  // sort by (logit, position) descending gives.
  auto before = [&](int64_t a, int64_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a > b; };
  std::vector<int64_t> best;
  best.reserve(n_best + 1);
  for (size_t i = 0; i < w.context_token.size(); ++i) {
    if (w.context_token[i] < 0) continue;
    keep_best(best, static_cast<int64_t>(i), n_best, before);
  }
  return best;
}

std::vector<Span> decode_squad(const std::vector<WindowScores>& windows, const TokenizedDocument& document,
                               const DecodeOptions& o) {
  std::vector<Span> spans;
  spans.reserve(o.n_best_size + 1);
  double null_score = std::numeric_limits<double>::infinity();
  for (const auto& w : windows) {
    null_score = std::min(null_score, double(w.start_logits[w.null_position]) + w.end_logits[w.null_position]);
    const auto starts = best_positions(w.start_logits, w, o.n_best_size);
    const auto ends = best_positions(w.end_logits, w, o.n_best_size);
    for (int64_t s : starts)
      for (int64_t e : ends) {
        if (w.context_token[s] < 0 || w.context_token[e] < 0 || e < s || e - s + 1 > o.max_answer_length) continue;
        // utils_qa keeps every candidate (no merging), sorts them stably by score and keeps n_best_size: the
        // same as keeping the n_best_size best in arrival order, a later candidate losing ties.
        keep_best(spans,
                  Span{double(w.start_logits[s]) + w.end_logits[e], document.offsets[w.context_token[s]].first,
                       document.offsets[w.context_token[e]].second, false,
                       double(w.start_logits[s]) + w.end_logits[e]},
                  o.n_best_size, higher_score);
      }
  }
  if (o.version_2_with_negative && !windows.empty()) {
    const Span null{null_score, 0, 0, true, null_score};
    if (spans.empty() || null_score - spans.front().score > o.null_threshold) spans.insert(spans.begin(), null);
  }
  if (spans.size() > static_cast<size_t>(o.top_k)) spans.resize(o.top_k);
  return spans;
}

}  // namespace

void validate(const DecodeOptions& o) {
  if (o.top_k < 1) throw std::invalid_argument("top_k must be at least 1, got " + std::to_string(o.top_k));
  if (o.max_answer_len < 1) throw std::invalid_argument("max_answer_len must be at least 1");
  if (o.n_best_size < 1) throw std::invalid_argument("n_best_size must be at least 1");
  if (o.max_answer_length < 1) throw std::invalid_argument("max_answer_length must be at least 1");
}

std::vector<Span> decode_document(const std::vector<WindowScores>& windows, const TokenizedDocument& document,
                                  const DecodeOptions& options) {
  validate(options);
  return options.decoding == Decoding::kSquad ? decode_squad(windows, document, options)
                                              : decode_pipeline(windows, document, options);
}

std::string substring_by_code_points(const std::string& s, int64_t start, int64_t end) {
  const size_t b = utf8::byte_offset_of_code_point(s, start), e = utf8::byte_offset_of_code_point(s, end);
  return e > b ? s.substr(b, e - b) : std::string();
}

}  // namespace deformer
