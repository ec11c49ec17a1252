#include "deformer/reader.h"

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <iostream>
#include <map>
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
    if (windows.empty()) continue;  // a document this question was not asked over
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

void Reader::check_cache(const cache::CacheReader& cache) const {
  if (options_.mode != Mode::kDeformer) throw std::invalid_argument("cached documents need deformer mode");
  const auto& m = cache.metadata();
  if (m.k != k_)
    throw std::invalid_argument("the cache holds layer-" + std::to_string(m.k) + " states; this reader splits at k=" + std::to_string(k_));
  if (m.model_hash != model_->content_hash())
    throw std::invalid_argument("the cache was made by model " + m.model_hash + ", not " + model_->content_hash());
}

std::vector<std::vector<Answer>> Reader::ask(const std::vector<std::string>& questions, const cache::CacheReader& cache,
                                             const std::vector<std::string>& doc_ids) const {
  check_cache(cache);
  std::vector<Document> documents;
  if (doc_ids.empty()) {
    for (int64_t i = 0; i < cache.num_documents(); ++i) documents.push_back({cache.document(i).id, cache.document_text(i)});
  } else {
    for (const auto& id : doc_ids) documents.push_back({id, cache.document_text(cache.find(id))});
  }
  return answer(questions, documents, &cache);
}

namespace {

// Each query's document indices into `documents`; an empty doc_ids list means all of them.
std::vector<std::vector<size_t>> query_scope(const std::vector<Query>& queries, const std::vector<Document>& documents) {
  std::map<std::string, size_t> index;
  for (size_t d = 0; d < documents.size(); ++d) index.emplace(documents[d].id, d);
  std::vector<std::vector<size_t>> scope;
  for (const auto& q : queries) {
    std::vector<size_t> ds;
    if (q.doc_ids.empty())
      for (size_t d = 0; d < documents.size(); ++d) ds.push_back(d);
    for (const auto& id : q.doc_ids) {
      auto it = index.find(id);
      if (it == index.end()) throw std::invalid_argument("unknown document id '" + id + "'");
      ds.push_back(it->second);
    }
    scope.push_back(std::move(ds));
  }
  return scope;
}

std::vector<std::string> query_texts(const std::vector<Query>& queries) {
  std::vector<std::string> texts;
  for (const auto& q : queries) texts.push_back(q.question);
  return texts;
}

// Host int64 indices on `device`; on a GPU through pinned memory without blocking the host.
at::Tensor indices_on(const std::vector<int64_t>& values, const c10::Device& device) {
  auto host = torch::tensor(values, torch::kLong);
  if (device.is_cpu()) return host;
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace

std::vector<std::vector<Answer>> Reader::ask(const std::vector<Query>& queries, const std::vector<Document>& documents) const {
  return answer(query_texts(queries), documents, nullptr, query_scope(queries, documents));
}

std::vector<std::vector<Answer>> Reader::ask(const std::vector<Query>& queries, const cache::CacheReader& cache) const {
  check_cache(cache);
  std::vector<Document> documents;
  std::set<std::string> named;
  bool every = false;
  for (const auto& q : queries) {
    every = every || q.doc_ids.empty();
    for (const auto& id : q.doc_ids)
      if (named.insert(id).second) documents.push_back({id, cache.document_text(cache.find(id))});
  }
  if (every) {
    documents.clear();
    for (int64_t i = 0; i < cache.num_documents(); ++i) documents.push_back({cache.document(i).id, cache.document_text(i)});
  }
  return answer(query_texts(queries), documents, &cache, query_scope(queries, documents));
}

std::vector<std::vector<Answer>> Reader::answer(const std::vector<std::string>& questions, const std::vector<Document>& documents,
                                                const cache::CacheReader* cache,
                                                const std::vector<std::vector<size_t>>& scope) const {
  const auto& c = model_->config();
  const auto& special = tokenizer_->special_tokens();
  const c10::Device device = device_of(*model_);
  auto warn = [&](const std::string& message) {
    if (options_.warn) options_.warn(message);
    else std::cerr << "deformer: warning: " << message << std::endl;
  };

  if (questions.empty()) return {};
  // Tokenizing and decoding are per question or per document and independent: they run on LibTorch's intra-op
  // threads, which are idle between forward passes (a batch of 256 questions is otherwise milliseconds of one core).
  std::vector<std::vector<int64_t>> q_ids(questions.size());
  at::parallel_for(0, questions.size(), 16, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      Encoding enc;
      try {
        enc = tokenizer_->encode(questions[q]);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("question: ") + e.what());
      }
      if (enc.ids.empty()) throw std::invalid_argument("question is empty");
      q_ids[q].assign(enc.ids.begin(), enc.ids.end());
    }
  });
  std::set<std::string> ids;
  for (const auto& d : documents)
    if (!ids.insert(d.id).second) throw std::invalid_argument("duplicate document id '" + d.id + "'");
  std::vector<PreparedDocument> docs(documents.size());
  at::parallel_for(0, documents.size(), 4, [&](int64_t begin, int64_t end) {
    for (int64_t d = begin; d < end; ++d)
      docs[d] = cache ? prepare_cached_document(documents[d], *cache, *tokenizer_) : prepare_document(documents[d], *tokenizer_);
  });
  // asked[q][d]: question q is asked over document d.
  std::vector<std::vector<char>> asked(questions.size(), std::vector<char>(docs.size(), scope.empty()));
  for (size_t q = 0; q < scope.size(); ++q)
    for (size_t d : scope[q]) asked[q][d] = 1;

  c10::InferenceMode inference;
  // outputs[q] holds question q's windows over its documents.
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
        for (int64_t w = info.first_window; w < info.first_window + info.num_windows; ++w) {
          windows.emplace_back(d, cache->window(w).tokens);
          cached_windows.push_back(w);
        }
      } else {
        for (const auto& w : document_windows(docs[d].ids.size(), c.document_block - 1, c.window_stride)) windows.emplace_back(d, w);
      }
    }
    // Real rows of a window's document block: its tokens and [SEP]. Blocks are cut after the longest real row
    // of each batch, so short windows cost what their tokens cost, not the block's padding.
    auto window_rows = [&](size_t w) { return windows[w].second.end - windows[w].second.begin + 1; };
    std::vector<std::vector<int64_t>> d_rows;
    if (cache) {
      // The upper layers read document ids only for the key mask, and cached documents are not re-tokenized: a
      // cached window stands in as its real rows of some id other than padding.
      const int64_t pad = c.pad_token_id, filler = pad == 0 ? 1 : 0;
      for (size_t w = 0; w < windows.size(); ++w) {
        d_rows.emplace_back(c.document_block, pad);
        std::fill(d_rows.back().begin(), d_rows.back().begin() + window_rows(w), filler);
      }
    } else {
      for (const auto& [d, w] : windows) {
        std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
        d_rows.push_back(document_block(tokens, c.document_block, special, convention).input_ids);
      }
    }
    auto d_ids = rows_to_tensor(d_rows, device);
    at::Tensor d_states;
    if (cache) {
      // Only the longest window's rows; fp16/bf16 states as stored when the model computes in that dtype (half
      // the bytes, no conversion); pinned host memory on a GPU so that the upload does not block the host.
      int64_t longest = 1;
      for (size_t w = 0; w < windows.size(); ++w) longest = std::max<int64_t>(longest, window_rows(w));
      const auto stored = cache->metadata().state_dtype;
      const auto compute = dtype_of(*model_);
      const bool as_stored = (stored == cache::StateDType::kFloat16 && compute == c10::kHalf) ||
                             (stored == cache::StateDType::kBFloat16 && compute == c10::kBFloat16);
      auto host = torch::empty({int64_t(cached_windows.size()), longest, c.hidden_size},
                               torch::TensorOptions(as_stored ? compute : c10::kFloat).pinned_memory(!device.is_cpu()));
      if (as_stored) cache->read_windows_16bit(cached_windows, longest, static_cast<uint16_t*>(host.data_ptr()));
      else cache->read_windows(cached_windows, longest, host.data_ptr<float>());
      d_states = host.to(device, compute, /*non_blocking=*/true);
    } else {
      std::vector<at::Tensor> parts;
      for (int64_t first = 0; first < d_ids.size(0); first += options_.batch_size) {
        const int64_t last = std::min<int64_t>(first + options_.batch_size, d_ids.size(0));
        int64_t longest = 1;
        for (int64_t w = first; w < last; ++w) longest = std::max<int64_t>(longest, window_rows(w));
        auto states = engine::encode_documents(*model_, d_ids.slice(0, first, last).slice(1, 0, longest), k_);
        parts.push_back(at::constant_pad_nd(states, {0, 0, 0, c.document_block - longest}));
      }
      d_states = at::cat(parts);
    }

    // Each question's lower layers once, whatever the number of windows.
    std::vector<std::vector<int64_t>> q_rows;
    std::vector<int> q_cls;
    std::vector<int64_t> q_lengths;
    for (const auto& q : q_ids) {
      auto block = question_block(q, c.question_block, special, convention);
      if (block.truncated)
        warn("question of " + std::to_string(q.size()) + " tokens cut to the question block's " + std::to_string(c.question_block - 2));
      q_lengths.push_back(std::min<int64_t>(q.size() + 2, c.question_block));
      q_rows.push_back(std::move(block.input_ids));
      q_cls.push_back(block.cls_position);
    }
    auto q_tensor = rows_to_tensor(q_rows, device);
    const int64_t q_longest = *std::max_element(q_lengths.begin(), q_lengths.end());
    q_tensor = q_tensor.slice(1, 0, q_longest);
    auto q_states = engine::encode_questions(*model_, q_tensor, k_);

    // Upper layers over (question, window) pairs in batches; the pair indices go to the device once.
    std::vector<int64_t> pair_q, pair_w;
    for (size_t q = 0; q < questions.size(); ++q)
      for (size_t w = 0; w < windows.size(); ++w)
        if (asked[q][windows[w].first]) {
          pair_q.push_back(q);
          pair_w.push_back(w);
        }
    auto qi_all = indices_on(pair_q, device), wi_all = indices_on(pair_w, device);
    const int64_t pairs = pair_q.size();
    for (int64_t first = 0; first < pairs; first += options_.batch_size) {
      const int64_t count = std::min<int64_t>(options_.batch_size, pairs - first);
      int64_t q_len = 1, d_len = 1;
      for (int64_t i = first; i < first + count; ++i) {
        q_len = std::max(q_len, q_lengths[pair_q[i]]);
        d_len = std::max<int64_t>(d_len, window_rows(pair_w[i]));
      }
      auto qi = qi_all.slice(0, first, first + count), wi = wi_all.slice(0, first, first + count);
      auto logits = engine::answer_logits(*model_, q_states.slice(1, 0, q_len).index_select(0, qi),
                                          q_tensor.slice(1, 0, q_len).index_select(0, qi),
                                          d_states.slice(1, 0, d_len).index_select(0, wi),
                                          d_ids.slice(1, 0, d_len).index_select(0, wi), k_);
      auto cpu = logits.to(at::kCPU).contiguous();
      // BERT rows are [question ; document], XLNet rows [document ; question].
      const bool document_first = convention == Convention::kXLNet;
      for (int64_t i = 0; i < count; ++i) {
        const size_t w = pair_w[first + i];
        keep(cpu, i, pair_q[first + i], windows[w].first, windows[w].second,
             document_first ? 0 : static_cast<int>(q_len),
             document_first ? static_cast<int>(d_len) + q_cls[pair_q[first + i]] : q_cls[pair_q[first + i]]);
      }
    }
  } else {
    // Hugging Face's windowing per question (windows as long as the sequence allows, overlapping by
    // doc_stride tokens); the windows of all questions are batched together.
    struct Row {
      size_t q, d;
      TokenSpan w;
    };
    std::vector<Row> rows_todo;
    for (size_t q = 0; q < q_ids.size(); ++q) {
      auto& question = q_ids[q];
      if (question.size() > static_cast<size_t>(c.max_question_len)) {
        warn("question of " + std::to_string(question.size()) + " tokens cut to max_question_len " + std::to_string(c.max_question_len));
        question.resize(c.max_question_len);
      }
      const int window = c.max_seq_len - static_cast<int>(question.size()) - 3;
      if (window <= c.doc_stride)
        throw std::invalid_argument("a question of " + std::to_string(question.size()) + " tokens leaves " + std::to_string(window) +
                                    " tokens per window, not more than the doc_stride overlap of " + std::to_string(c.doc_stride));
      for (size_t d = 0; d < docs.size(); ++d)
        if (asked[q][d])
          for (const auto& w : document_windows(docs[d].ids.size(), window, window - c.doc_stride)) rows_todo.push_back({q, d, w});
    }
    for (size_t first = 0; first < rows_todo.size(); first += options_.batch_size) {
      const size_t count = std::min<size_t>(options_.batch_size, rows_todo.size() - first);
      int64_t longest = 0;
      for (size_t i = 0; i < count; ++i) {
        const auto& r = rows_todo[first + i];
        longest = std::max<int64_t>(longest, int64_t(q_ids[r.q].size()) + (r.w.end - r.w.begin) + 3);
      }
      // Padded to the batch's longest row rather than max_seq_len: padding never changes real positions.
      const int length = static_cast<int>(longest);
      std::vector<std::vector<int64_t>> rows, types, masks;
      std::vector<std::pair<int, int>> places;  // (context_begin, cls_position) of each row
      for (size_t i = 0; i < count; ++i) {
        const auto& r = rows_todo[first + i];
        std::vector<int64_t> tokens(docs[r.d].ids.begin() + r.w.begin, docs[r.d].ids.begin() + r.w.end);
        auto block = full_block(q_ids[r.q], tokens, length, c.max_question_len, special, convention);
        rows.push_back(std::move(block.input_ids));
        types.push_back(std::move(block.token_type_ids));
        masks.push_back(std::move(block.attention_mask));
        places.emplace_back(block.context_begin, block.cls_position);
      }
      auto logits = engine::full_logits(*model_, rows_to_tensor(rows, device), rows_to_tensor(types, device),
                                        rows_to_tensor(masks, device));
      auto cpu = logits.to(at::kCPU).contiguous();
      for (size_t i = 0; i < count; ++i) {
        const auto& r = rows_todo[first + i];
        keep(cpu, i, r.q, r.d, r.w, places[i].first, places[i].second);
      }
    }
  }

  std::vector<std::vector<Answer>> results(outputs.size());
  at::parallel_for(0, outputs.size(), 8, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) results[q] = pool_answers(outputs[q], docs, options_.decode);
  });
  return results;
}

}  // namespace deformer
