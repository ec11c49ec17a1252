#include "deformer/reader.h"

#include <torch/script.h>

#include <iostream>
#include <set>
#include <stdexcept>

#include "deformer/cache.h"
#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/tokenizer.h"
#include "document.h"
#include "tensors.h"

namespace deformer {
namespace {

// One window's logits copied to the host with the map from positions to document tokens.
struct WindowOutput {
  size_t document = 0;
  std::vector<float> start, end;
  WindowScores scores;
};

void keep_logits(const at::Tensor& logits_cpu, int64_t row, WindowOutput& out) {
  auto l = logits_cpu[row];
  const int64_t n = l.size(0);
  out.start.resize(n);
  out.end.resize(n);
  auto a = l.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    out.start[i] = a[i][0];
    out.end[i] = a[i][1];
  }
  out.scores.context_token.resize(n, -1);
}

// Decodes each document over its windows, then pools the documents: best first, the null answer (when
// allowed) scored by its minimum over all windows, cut to top_k.
std::vector<Answer> pool_answers(std::vector<WindowOutput>& outputs, const std::vector<PreparedDocument>& docs,
                                 const DecodeOptions& options) {
  std::vector<std::pair<Span, size_t>> pooled;
  bool have_null = false;
  Span null;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<WindowScores> windows;
    for (auto& out : outputs)
      if (out.document == d) {
        out.scores.start_logits = out.start.data();
        out.scores.end_logits = out.end.data();
        windows.push_back(out.scores);
      }
    for (const auto& span : decode_document(windows, docs[d].tokens, options)) {
      if (!span.null) {
        pooled.emplace_back(span, d);
      } else if (!have_null || span.score < null.score) {
        null = span;
        have_null = true;
      }
    }
  }
  if (have_null) pooled.emplace_back(null, docs.size());
  std::stable_sort(pooled.begin(), pooled.end(), [](const auto& a, const auto& b) { return a.first.score > b.first.score; });
  if (pooled.size() > static_cast<size_t>(options.top_k)) pooled.resize(options.top_k);
  std::vector<Answer> answers;
  for (const auto& [span, d] : pooled) {
    Answer a;
    a.score = span.score;
    if (!span.null) {
      a.start = span.start;
      a.end = span.end;
      a.doc = docs[d].source->id;
      a.answer = substring_by_code_points(docs[d].source->text, span.start, span.end);
    }
    answers.push_back(std::move(a));
  }
  return answers;
}

}  // namespace

const char* to_string(Mode mode) { return mode == Mode::kFull ? "full" : "deformer"; }

Mode parse_mode(const std::string& text) {
  if (text == "deformer") return Mode::kDeformer;
  if (text == "full") return Mode::kFull;
  throw std::invalid_argument("unknown mode '" + text + "' (expected deformer or full)");
}

Reader::Reader(std::shared_ptr<const Model> model, ReaderOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  if (!model_) throw std::invalid_argument("Reader needs a model");
  validate(options_.decode);
  if (options_.batch_size < 1) throw std::invalid_argument("batch_size must be at least 1");
  const int n = model_->config().num_layers;
  k_ = options_.k < 0 ? n * 3 / 4 : options_.k;
  engine::check_split(*model_, k_);
  tokenizer_ = make_tokenizer(*model_);
}

Reader::~Reader() = default;

std::vector<Answer> Reader::ask(const std::string& question, const std::vector<Document>& documents) const {
  return ask(std::vector<std::string>{question}, documents).front();
}

std::vector<std::vector<Answer>> Reader::ask(const std::vector<std::string>& questions,
                                             const std::vector<Document>& documents) const {
  return answer(questions, documents, nullptr);
}

std::vector<std::vector<Answer>> Reader::ask(const std::vector<std::string>& questions, const cache::CacheReader& cache,
                                             const std::vector<std::string>& doc_ids) const {
  if (options_.mode != Mode::kDeformer) throw std::invalid_argument("cached documents need deformer mode");
  const auto& m = cache.metadata();
  if (m.k != k_)
    throw std::invalid_argument("the cache holds layer-" + std::to_string(m.k) + " states; this reader splits at k=" + std::to_string(k_));
  if (m.model_hash != model_->content_hash())
    throw std::invalid_argument("the cache was made by model " + m.model_hash + ", not " + model_->content_hash());
  std::vector<Document> documents;
  if (doc_ids.empty()) {
    for (int64_t i = 0; i < cache.num_documents(); ++i) documents.push_back({cache.document(i).id, cache.document_text(i)});
  } else {
    for (const auto& id : doc_ids) documents.push_back({id, cache.document_text(cache.find(id))});
  }
  return answer(questions, documents, &cache);
}

std::vector<std::vector<Answer>> Reader::answer(const std::vector<std::string>& questions, const std::vector<Document>& documents,
                                                const cache::CacheReader* cache) const {
  const auto& c = model_->config();
  const auto& special = tokenizer_->special_tokens();
  const c10::Device device = device_of(*model_);
  auto warn = [&](const std::string& message) {
    if (options_.warn) options_.warn(message);
    else std::cerr << "deformer: warning: " << message << std::endl;
  };

  std::vector<std::vector<int64_t>> q_ids;
  for (const auto& question : questions) {
    Encoding enc;
    try {
      enc = tokenizer_->encode(question);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("question: ") + e.what());
    }
    if (enc.ids.empty()) throw std::invalid_argument("question is empty");
    q_ids.emplace_back(enc.ids.begin(), enc.ids.end());
  }
  std::set<std::string> ids;
  std::vector<PreparedDocument> docs;
  docs.reserve(documents.size());
  for (const auto& d : documents) {
    if (!ids.insert(d.id).second) throw std::invalid_argument("duplicate document id '" + d.id + "'");
    docs.push_back(prepare_document(d, *tokenizer_));
  }

  c10::InferenceMode inference;
  // outputs[q] holds question q's windows over all documents.
  std::vector<std::vector<WindowOutput>> outputs(questions.size());
  const Convention convention = convention_of(c);
  // context_offset: where the window's first token sits in the row; cls_position: the null answer's position.
  auto keep = [&](const at::Tensor& logits_cpu, int64_t row, size_t q, size_t d, const TokenSpan& w, int context_offset,
                  int cls_position) {
    WindowOutput out;
    out.document = d;
    keep_logits(logits_cpu, row, out);
    for (int64_t t = w.begin; t < w.end; ++t) out.scores.context_token[context_offset + (t - w.begin)] = t;
    out.scores.null_position = cls_position;
    outputs[q].push_back(std::move(out));
  };

  if (options_.mode == Mode::kDeformer) {
    // The documents' windows and layer-k states do not depend on the questions: computed once, or read
    // from the cache.
    std::vector<std::pair<size_t, TokenSpan>> windows;
    std::vector<int64_t> cached_windows;
    for (size_t d = 0; d < docs.size(); ++d) {
      if (cache) {
        const auto& info = cache->document(cache->find(docs[d].source->id));
        const auto offsets = cache->token_offsets(cache->find(docs[d].source->id));
        bool same = offsets.size() == docs[d].tokens.offsets.size();
        for (size_t t = 0; same && t < offsets.size(); ++t)
          same = offsets[t].begin == docs[d].tokens.offsets[t].first && offsets[t].end == docs[d].tokens.offsets[t].second;
        if (!same)
          throw std::runtime_error("document '" + docs[d].source->id + "': the cache's tokens differ from this model's tokenizer");
        for (int64_t w = info.first_window; w < info.first_window + info.num_windows; ++w) {
          windows.emplace_back(d, cache->window(w).tokens);
          cached_windows.push_back(w);
        }
      } else {
        for (const auto& w : document_windows(docs[d].ids.size(), c.document_block - 1, c.window_stride)) windows.emplace_back(d, w);
      }
    }
    std::vector<std::vector<int64_t>> d_rows;
    for (const auto& [d, w] : windows) {
      std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
      d_rows.push_back(document_block(tokens, c.document_block, special, convention).input_ids);
    }
    auto d_ids = rows_to_tensor(d_rows, device);
    at::Tensor d_states;
    if (cache) {
      auto host = torch::empty({int64_t(cached_windows.size()), c.document_block, c.hidden_size}, torch::kFloat);
      cache->read_windows(cached_windows, host.data_ptr<float>());
      d_states = host.to(device, dtype_of(*model_));
    } else {
      std::vector<at::Tensor> parts;
      for (int64_t first = 0; first < d_ids.size(0); first += options_.batch_size)
        parts.push_back(engine::encode_documents(*model_, d_ids.slice(0, first, first + options_.batch_size), k_));
      d_states = at::cat(parts);
    }

    // Each question's lower layers once, whatever the number of windows.
    std::vector<std::vector<int64_t>> q_rows;
    std::vector<int> q_cls;
    for (const auto& q : q_ids) {
      auto block = question_block(q, c.question_block, special, convention);
      if (block.truncated)
        warn("question of " + std::to_string(q.size()) + " tokens cut to the question block's " + std::to_string(c.question_block - 2));
      q_rows.push_back(std::move(block.input_ids));
      q_cls.push_back(block.cls_position);
    }
    auto q_tensor = rows_to_tensor(q_rows, device);
    auto q_states = engine::encode_questions(*model_, q_tensor, k_);

    // Upper layers over (question, window) pairs in batches.
    const int64_t pairs = int64_t(questions.size()) * int64_t(windows.size());
    for (int64_t first = 0; first < pairs; first += options_.batch_size) {
      const int64_t count = std::min<int64_t>(options_.batch_size, pairs - first);
      auto pair = at::arange(first, first + count, at::kLong);
      auto qi = at::div(pair, int64_t(windows.size()), "floor").to(device), wi = at::remainder(pair, int64_t(windows.size())).to(device);
      auto logits = engine::answer_logits(*model_, q_states.index_select(0, qi), q_tensor.index_select(0, qi),
                                          d_states.index_select(0, wi), d_ids.index_select(0, wi), k_);
      auto cpu = logits.to(at::kCPU).contiguous();
      // BERT rows are [question ; document], XLNet rows [document ; question].
      const bool document_first = convention == Convention::kXLNet;
      for (int64_t i = 0; i < count; ++i) {
        const size_t q = (first + i) / windows.size(), w = (first + i) % windows.size();
        keep(cpu, i, q, windows[w].first, windows[w].second, document_first ? 0 : c.question_block,
             document_first ? c.document_block + q_cls[q] : q_cls[q]);
      }
    }
  } else {
    for (size_t q = 0; q < q_ids.size(); ++q) {
      auto question = q_ids[q];
      if (question.size() > static_cast<size_t>(c.max_question_len)) {
        warn("question of " + std::to_string(question.size()) + " tokens cut to max_question_len " + std::to_string(c.max_question_len));
        question.resize(c.max_question_len);
      }
      // Hugging Face's windowing: windows as long as the sequence allows, overlapping by doc_stride tokens.
      const int window = c.max_seq_len - static_cast<int>(question.size()) - 3;
      if (window <= c.doc_stride)
        throw std::invalid_argument("a question of " + std::to_string(question.size()) + " tokens leaves " + std::to_string(window) +
                                    " tokens per window, not more than the doc_stride overlap of " + std::to_string(c.doc_stride));
      std::vector<std::pair<size_t, TokenSpan>> windows;
      for (size_t d = 0; d < docs.size(); ++d)
        for (const auto& w : document_windows(docs[d].ids.size(), window, window - c.doc_stride)) windows.emplace_back(d, w);
      for (size_t first = 0; first < windows.size(); first += options_.batch_size) {
        const size_t count = std::min<size_t>(options_.batch_size, windows.size() - first);
        int64_t longest = 0;
        for (size_t i = 0; i < count; ++i) longest = std::max<int64_t>(longest, windows[first + i].second.end - windows[first + i].second.begin);
        // Padded to the batch's longest row rather than max_seq_len: padding never changes real positions.
        const int length = static_cast<int>(question.size() + longest + 3);
        std::vector<std::vector<int64_t>> rows, types, masks;
        std::vector<std::pair<int, int>> places;  // (context_begin, cls_position) of each row
        for (size_t i = 0; i < count; ++i) {
          const auto& [d, w] = windows[first + i];
          std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
          auto block = full_block(question, tokens, length, c.max_question_len, special, convention);
          rows.push_back(std::move(block.input_ids));
          types.push_back(std::move(block.token_type_ids));
          masks.push_back(std::move(block.attention_mask));
          places.emplace_back(block.context_begin, block.cls_position);
        }
        auto logits = engine::full_logits(*model_, rows_to_tensor(rows, device), rows_to_tensor(types, device),
                                          rows_to_tensor(masks, device));
        auto cpu = logits.to(at::kCPU).contiguous();
        for (size_t i = 0; i < count; ++i)
          keep(cpu, i, q, windows[first + i].first, windows[first + i].second, places[i].first, places[i].second);
      }
    }
  }

  std::vector<std::vector<Answer>> results;
  for (auto& per_question : outputs) results.push_back(pool_answers(per_question, docs, options_.decode));
  return results;
}

}  // namespace deformer
