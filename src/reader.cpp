#include "deformer/reader.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <array>
#include <chrono>
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

// logits_cpu: contiguous float32 [rows, positions, 2].
void keep_logits(const at::Tensor& logits_cpu, int64_t row, WindowOutput& out) {
  const int64_t n = logits_cpu.size(1);
  const float* l = logits_cpu.data_ptr<float>() + row * n * 2;
  out.start.resize(n);
  out.end.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    out.start[i] = l[2 * i];
    out.end[i] = l[2 * i + 1];
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
    a.logits = span.logits;
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
  k_ = resolve_split(model_->config(), options_.k);
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
    for (int64_t i = 0; i < cache.num_documents(); ++i) documents.push_back({cache.document(i).id, cache.document_text(i), ""});
  } else {
    for (const auto& id : doc_ids) documents.push_back({id, cache.document_text(cache.find(id)), ""});
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

}  // namespace

std::vector<std::vector<Answer>> Reader::ask(const std::vector<Query>& queries, const std::vector<Document>& documents) const {
  return answer(query_texts(queries), documents, nullptr, query_scope(queries, documents));
}

namespace {

// The documents `queries` name in a cache (every cached document when one names none).
std::vector<Document> named_documents(const std::vector<Query>& queries, const cache::CacheReader& cache) {
  std::vector<Document> documents;
  std::set<std::string> named;
  bool every = false;
  for (const auto& q : queries) {
    every = every || q.doc_ids.empty();
    for (const auto& id : q.doc_ids)
      if (named.insert(id).second) documents.push_back({id, cache.document_text(cache.find(id)), ""});
  }
  if (every) {
    documents.clear();
    for (int64_t i = 0; i < cache.num_documents(); ++i) documents.push_back({cache.document(i).id, cache.document_text(i), ""});
  }
  return documents;
}

}  // namespace

std::vector<std::vector<Answer>> Reader::ask(const std::vector<Query>& queries, const cache::CacheReader& cache) const {
  check_cache(cache);
  const auto documents = named_documents(queries, cache);
  return answer(query_texts(queries), documents, &cache, query_scope(queries, documents));
}

std::vector<std::vector<Answer>> Reader::ask(const std::vector<Query>& queries, const ResidentCache& resident) const {
  check_cache(resident.cache());
  const Model& held = resident.model();
  if (device_of(held) != device_of(*model_) || dtype_of(held) != dtype_of(*model_))
    throw std::invalid_argument("the resident cache is held on " + device_of(held).str() + " in " +
                                std::string(c10::toString(dtype_of(held))) + "; this reader's model computes on " +
                                device_of(*model_).str() + " in " + c10::toString(dtype_of(*model_)));
  const auto documents = named_documents(queries, resident.cache());
  return answer(query_texts(queries), documents, &resident.cache(), query_scope(queries, documents), &resident);
}


namespace {

using Clock = std::chrono::steady_clock;

// ReaderOptions::on_phase: times consecutive phases, synchronising the device at each end; idle when unset.
class PhaseClock {
 public:
  PhaseClock(const ReaderOptions& options, const c10::Device& device)
      : report_(options.on_phase), device_(device), begin_(Clock::now()) {}
  void end(const char* phase) {
    if (!report_) return;
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    const auto now = Clock::now();
    report_(phase, std::chrono::duration<double>(now - begin_).count());
    begin_ = now;
  }

 private:
  const std::function<void(const char*, double)>& report_;
  c10::Device device_;
  Clock::time_point begin_;
};

// A cache's windows as host states, `rows` rows each: the stored fp16/bf16 values when the model computes in
// that dtype (half the bytes, no conversion), float32 otherwise; pinned on a GPU so that the upload does not
// block the host.
at::Tensor read_states(const cache::CacheReader& cache, const std::vector<int64_t>& windows, int64_t rows,
                       const Model& model) {
  const auto stored = cache.metadata().state_dtype;
  const auto compute = dtype_of(model);
  const bool as_stored = (stored == cache::StateDType::kFloat16 && compute == c10::kHalf) ||
                         (stored == cache::StateDType::kBFloat16 && compute == c10::kBFloat16);
  auto host = torch::empty({static_cast<int64_t>(windows.size()), rows, cache.metadata().hidden_size},
                           torch::TensorOptions(as_stored ? compute : c10::kFloat).pinned_memory(!device_of(model).is_cpu()));
  if (as_stored) cache.read_windows_16bit(windows, rows, static_cast<uint16_t*>(host.data_ptr()));
  else cache.read_windows(windows, rows, host.data_ptr<float>());
  return host;
}

// The same on the model's device in its compute dtype.
at::Tensor cached_states(const cache::CacheReader& cache, const std::vector<int64_t>& windows, int64_t rows,
                         const Model& model) {
  return to_device(read_states(cache, windows, rows, model), device_of(model)).to(dtype_of(model));
}

// One planned forward pass: its rows (indices into the caller's list) and the lengths they were padded to.
struct Pass {
  std::vector<size_t> rows;
  int64_t first_length = 0, second_length = 0;
};

std::vector<Pass> plan_passes(const std::vector<std::array<int64_t, 2>>& lengths, int64_t max_rows, int64_t cost) {
  std::vector<Pass> passes;
  for (auto& rows : plan_batches(lengths, max_rows, cost)) {
    Pass p;
    for (size_t i : rows) {
      p.first_length = std::max(p.first_length, lengths[i][0]);
      p.second_length = std::max(p.second_length, lengths[i][1]);
    }
    p.rows = std::move(rows);
    passes.push_back(std::move(p));
  }
  return passes;
}

// Logits of one pass copied to the host. On a GPU the copy does not wait; the last pass's copy does, which
// (one stream) also waits for every earlier one, so the host waits once per call.
at::Tensor logits_to_host(const at::Tensor& logits, bool last) {
  if (logits.is_cpu()) return logits.contiguous();
  auto host = torch::empty(logits.sizes(), torch::TensorOptions(logits.scalar_type()).pinned_memory(true));
  host.copy_(logits, /*non_blocking=*/!last);
  return host;
}

// Encodes the rows of `ids` ([n, block]) whose real lengths are `lengths` in planned passes, padded back to the
// longest length into one [n, longest, H] tensor in the rows' order.
at::Tensor encode_in_passes(const at::Tensor& ids, const std::vector<int64_t>& lengths, int64_t max_rows, int64_t cost,
                            const std::function<at::Tensor(const at::Tensor&)>& encode) {
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  std::vector<std::array<int64_t, 2>> l;
  for (int64_t x : lengths) l.push_back({x, 0});
  const auto passes = plan_passes(l, max_rows, cost);
  if (passes.size() == 1) return encode(ids.slice(1, 0, longest));
  at::Tensor out;
  for (const auto& p : passes) {
    auto index = indices_on(std::vector<int64_t>(p.rows.begin(), p.rows.end()), ids.device());
    auto states = encode(ids.index_select(0, index).slice(1, 0, p.first_length));
    if (!out.defined()) out = at::empty({ids.size(0), longest, states.size(2)}, states.options());
    out.index_copy_(0, index, at::constant_pad_nd(states, {0, 0, 0, longest - p.first_length}));
  }
  return out;
}

// Rows of packed questions: short enough for attention over a row to stay cheap, long enough to hold several.
constexpr int64_t kPackedRow = 128;

// The questions' lower layers with their blocks (the first q_lengths[q] ids of q_rows[q]) packed several to a row,
// first fit, longest first, so that a batch of questions pays for its tokens rather than for its longest question;
// unpacked into [questions, longest, H], zero past each question's tokens.
at::Tensor encode_packed(const Model& model, const std::vector<std::vector<int64_t>>& q_rows,
                         const std::vector<int64_t>& q_lengths, int k, const c10::Device& device) {
  const int64_t n = q_rows.size(), longest = *std::max_element(q_lengths.begin(), q_lengths.end());
  // One row as long as all the questions when they fit in less (one question pays for its own tokens), in steps of 8
  // so that a few CUDA graphs serve every call.
  int64_t total = 0;
  for (int64_t l : q_lengths) total += l;
  const int64_t row_length = std::max(longest, std::min(kPackedRow, (total + 7) / 8 * 8));
  std::vector<size_t> order(n);
  for (int64_t q = 0; q < n; ++q) order[q] = q;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return q_lengths[a] > q_lengths[b]; });
  std::vector<int64_t> filled, row_of(n), offset_of(n);
  for (size_t q : order) {
    size_t r = 0;
    while (r < filled.size() && filled[r] + q_lengths[q] > row_length) ++r;
    if (r == filled.size()) filled.push_back(0);
    row_of[q] = r;
    offset_of[q] = filled[r];
    filled[r] += q_lengths[q];
  }
  const int64_t rows = filled.size();
  std::vector<std::vector<int64_t>> ids(rows, std::vector<int64_t>(row_length, model.config().pad_token_id)),
      positions(rows, std::vector<int64_t>(row_length, 0)), segments(rows, std::vector<int64_t>(row_length, -1));
  std::vector<int64_t> unpack(n * longest, rows * row_length);  // past a question's tokens: the zero row below
  for (int64_t q = 0; q < n; ++q)
    for (int64_t t = 0; t < q_lengths[q]; ++t) {
      const int64_t r = row_of[q], at = offset_of[q] + t;
      ids[r][at] = q_rows[q][t];
      positions[r][at] = t;
      segments[r][at] = q;
      unpack[q * longest + t] = r * row_length + at;
    }
  auto out = engine::encode_packed_questions(model, rows_to_tensor(ids, device), rows_to_tensor(positions, device),
                                             rows_to_tensor(segments, device), k);
  const int64_t hidden = out.size(2);
  auto flat = at::cat({out.reshape({rows * row_length, hidden}), at::zeros({1, hidden}, out.options())});
  return flat.index_select(0, indices_on(unpack, device)).view({n, longest, hidden});
}

}  // namespace

struct ResidentCache::Impl {
  const cache::CacheReader* cache = nullptr;
  std::shared_ptr<const Model> model;
  at::Tensor rows;                 // [R + 1, H]: every window's real rows in window order, then a zero row
  std::vector<int64_t> first_row;  // per window, its first row in `rows`

  // The windows' states as [windows.size(), length, H], rows past a window's real rows zero.
  at::Tensor gather(const std::vector<int64_t>& windows, int64_t length) const {
    const int64_t zero = rows.size(0) - 1;
    std::vector<int64_t> index(windows.size() * length, zero);
    for (size_t i = 0; i < windows.size(); ++i) {
      const int64_t real = std::min(length, cache->window(windows[i]).rows);
      for (int64_t r = 0; r < real; ++r) index[i * length + r] = first_row[windows[i]] + r;
    }
    return rows.index_select(0, indices_on(index, rows.device())).view({static_cast<int64_t>(windows.size()), length, rows.size(1)});
  }
};

std::vector<std::vector<Answer>> Reader::answer(const std::vector<std::string>& questions, const std::vector<Document>& documents,
                                                const cache::CacheReader* cache,
                                                const std::vector<std::vector<size_t>>& scope,
                                                const ResidentCache* resident) const {
  const auto& c = model_->config();
  const auto& special = tokenizer_->special_tokens();
  const c10::Device device = device_of(*model_);
  const int64_t pass_cost = options_.pass_cost_tokens >= 0 ? options_.pass_cost_tokens : device.is_cpu() ? 64 : 8192;
  // A batch of questions' lower layers replays a CUDA graph per pass (engine.cpp), which costs little more than
  // its tokens: passes by length are worth more there.
  const int64_t question_pass_cost = options_.pass_cost_tokens >= 0 || device.is_cpu() ? pass_cost : 512;
  PhaseClock clock(options_, device);
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
  clock.end("tokenize");
  // asked[q][d]: question q is asked over document d.
  std::vector<std::vector<char>> asked(questions.size(), std::vector<char>(documents.size(), scope.empty()));
  for (size_t q = 0; q < scope.size(); ++q)
    for (size_t d : scope[q]) asked[q][d] = 1;
  // No (question, document) pair, as over an empty corpus: no answers, and no empty passes to run.
  if (std::none_of(asked.begin(), asked.end(), [](const std::vector<char>& row) {
        return std::find(row.begin(), row.end(), 1) != row.end();
      }))
    return std::vector<std::vector<Answer>>(questions.size());
  auto prepare_documents = [&] {
    std::vector<PreparedDocument> docs(documents.size());
    at::parallel_for(0, documents.size(), 4, [&](int64_t begin, int64_t end) {
      for (int64_t d = begin; d < end; ++d)
        docs[d] = cache ? prepare_cached_document(documents[d], *cache, *tokenizer_) : prepare_document(documents[d], *tokenizer_, options_.max_document_tokens);
    });
    clock.end("documents");
    return docs;
  };

  c10::InferenceMode inference;
  // outputs[q] holds question q's windows over its documents.
  std::vector<std::vector<WindowOutput>> outputs(questions.size());
  const Convention convention = convention_of(c);
  // context_offset: where the window's first token sits in the row; cls_position: the null answer's position.
  auto window_output = [&](const at::Tensor& logits_cpu, int64_t row, size_t d, const TokenSpan& w, int context_offset,
                           int cls_position) {
    WindowOutput out;
    out.document = d;
    keep_logits(logits_cpu, row, out);
    for (int64_t t = w.begin; t < w.end; ++t) out.scores.context_token[context_offset + (t - w.begin)] = t;
    out.scores.null_position = cls_position;
    return out;
  };
  // Each row's window output, made on the intra-op threads, then handed to its question in the rows' order.
  auto keep_all = [&](size_t rows, const std::function<size_t(size_t)>& question_of,
                      const std::function<WindowOutput(size_t)>& make) {
    std::vector<WindowOutput> made(rows);
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) made[i] = make(i);
    });
    for (size_t i = 0; i < rows; ++i) outputs[question_of(i)].push_back(std::move(made[i]));
  };
  // Where each row of a call's passes went: its pass and its row there.
  struct Placed {
    size_t pass = 0;
    int64_t row = 0;
  };
  auto place = [](const std::vector<Pass>& passes, size_t n) {
    std::vector<Placed> placed(n);
    for (size_t p = 0; p < passes.size(); ++p)
      for (size_t i = 0; i < passes[p].rows.size(); ++i) placed[passes[p].rows[i]] = {p, static_cast<int64_t>(i)};
    return placed;
  };
  std::vector<PreparedDocument> docs;

  if (options_.mode == Mode::kDeformer) {
    // Each question's lower layers once, whatever the number of windows; launched first, so that a GPU runs them
    // while the host reads the documents' states.
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
    auto q_states = engine::can_pack_questions(*model_)
                        ? encode_packed(*model_, q_rows, q_lengths, k_, device)
                        : encode_in_passes(q_tensor, q_lengths, options_.batch_size, question_pass_cost,
                                           [&](const at::Tensor& x) { return engine::encode_questions(*model_, x, k_); });
    clock.end("lower_layers");

    // The documents' windows and layer-k states do not depend on the questions: computed once, or read
    // from the cache.
    docs = prepare_documents();
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
    // of each pass, so short windows cost what their tokens cost, not the block's padding.
    std::vector<int64_t> w_rows;
    for (const auto& [d, w] : windows) w_rows.push_back(w.end - w.begin + 1);
    std::vector<std::vector<int64_t>> d_rows;
    if (cache) {
      // The upper layers read document ids only for the key mask, and cached documents are not re-tokenized: a
      // cached window stands in as its real rows of some id other than padding.
      const int64_t pad = c.pad_token_id, filler = pad == 0 ? 1 : 0;
      for (size_t w = 0; w < windows.size(); ++w) {
        d_rows.emplace_back(c.document_block, pad);
        std::fill(d_rows.back().begin(), d_rows.back().begin() + w_rows[w], filler);
      }
    } else {
      for (const auto& [d, w] : windows) {
        std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
        d_rows.push_back(document_block(tokens, c.document_block, special, convention).input_ids);
      }
    }
    auto d_ids = rows_to_tensor(d_rows, device);
    const int64_t d_longest = *std::max_element(w_rows.begin(), w_rows.end());
    // (question, window) pairs, for the upper layers.
    std::vector<int64_t> pair_q, pair_w;
    std::vector<std::array<int64_t, 2>> pair_lengths;
    for (size_t q = 0; q < questions.size(); ++q)
      for (size_t w = 0; w < windows.size(); ++w)
        if (asked[q][windows[w].first]) {
          pair_q.push_back(q);
          pair_w.push_back(w);
          pair_lengths.push_back({q_lengths[q], w_rows[w]});
        }
    // Cached states of windows that serve one pair each are read pass by pass, each pass's read overlapping the
    // device's work on the pass before; shared windows are read once, up front, as they are when profiling.
    std::vector<int> uses(windows.size(), 0);
    for (int64_t w : pair_w) ++uses[w];
    const bool read_per_pass = cache && !resident && !options_.on_phase &&
                               std::all_of(uses.begin(), uses.end(), [](int u) { return u <= 1; });
    at::Tensor d_states;  // undefined when read per pass
    if (resident) {
      d_states = resident->impl().gather(cached_windows, d_longest);
      clock.end("cache_read");
    } else if (cache && !read_per_pass) {
      d_states = cached_states(*cache, cached_windows, d_longest, *model_);
      clock.end("cache_read");
    } else if (!cache) {
      d_states = encode_in_passes(d_ids, w_rows, options_.batch_size, pass_cost,
                                  [&](const at::Tensor& x) { return engine::encode_documents(*model_, x, k_); });
      clock.end("lower_layers");
    }

    const auto passes = plan_passes(pair_lengths, options_.batch_size, pass_cost);
    std::vector<int64_t> order_q, order_w;
    for (const auto& p : passes)
      for (size_t i : p.rows) {
        order_q.push_back(pair_q[i]);
        order_w.push_back(pair_w[i]);
      }
    auto qi_all = indices_on(order_q, device), wi_all = indices_on(order_w, device);
    std::vector<at::Tensor> logits;
    int64_t first = 0;
    for (size_t p = 0; p < passes.size(); ++p) {
      const int64_t count = passes[p].rows.size(), q_len = passes[p].first_length, d_len = passes[p].second_length;
      auto qi = qi_all.slice(0, first, first + count), wi = wi_all.slice(0, first, first + count);
      first += count;
      at::Tensor pass_states;
      if (read_per_pass) {
        std::vector<int64_t> pass_windows;
        for (size_t i : passes[p].rows) pass_windows.push_back(cached_windows[pair_w[i]]);
        pass_states = cached_states(*cache, pass_windows, d_len, *model_);
      } else {
        pass_states = d_states.slice(1, 0, d_len).index_select(0, wi);
      }
      logits.push_back(logits_to_host(engine::answer_logits(*model_, q_states.slice(1, 0, q_len).index_select(0, qi),
                                                             q_tensor.slice(1, 0, q_len).index_select(0, qi), pass_states,
                                                             d_ids.slice(1, 0, d_len).index_select(0, wi), k_),
                                       p + 1 == passes.size()));
    }
    clock.end("upper_layers");
    // BERT rows are [question ; document], XLNet rows [document ; question]. Pairs are kept in their order, not
    // the passes', so that answers do not depend on the plan.
    const bool document_first = convention == Convention::kXLNet;
    const auto placed = place(passes, pair_q.size());
    keep_all(pair_q.size(), [&](size_t i) { return pair_q[i]; }, [&](size_t i) {
      const auto& pass = passes[placed[i].pass];
      const size_t q = pair_q[i], w = pair_w[i];
      return window_output(logits[placed[i].pass], placed[i].row, windows[w].first, windows[w].second,
                           document_first ? 0 : static_cast<int>(pass.first_length),
                           document_first ? static_cast<int>(pass.second_length) + q_cls[q] : q_cls[q]);
    });
  } else {
    docs = prepare_documents();
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
    std::vector<std::array<int64_t, 2>> lengths;
    for (const auto& r : rows_todo) lengths.push_back({int64_t(q_ids[r.q].size()) + (r.w.end - r.w.begin) + 3, 0});
    const auto passes = plan_passes(lengths, options_.batch_size, pass_cost);
    std::vector<at::Tensor> logits;
    std::vector<std::vector<std::pair<int, int>>> places(passes.size());  // (context_begin, cls_position) of each row
    for (size_t p = 0; p < passes.size(); ++p) {
      // Padded to the pass's longest row rather than max_seq_len: padding never changes real positions.
      const int length = static_cast<int>(passes[p].first_length);
      std::vector<std::vector<int64_t>> rows, types, masks;
      for (size_t i : passes[p].rows) {
        const auto& r = rows_todo[i];
        std::vector<int64_t> tokens(docs[r.d].ids.begin() + r.w.begin, docs[r.d].ids.begin() + r.w.end);
        auto block = full_block(q_ids[r.q], tokens, length, c.max_question_len, special, convention);
        rows.push_back(std::move(block.input_ids));
        types.push_back(std::move(block.token_type_ids));
        masks.push_back(std::move(block.attention_mask));
        places[p].emplace_back(block.context_begin, block.cls_position);
      }
      logits.push_back(logits_to_host(engine::full_logits(*model_, rows_to_tensor(rows, device), rows_to_tensor(types, device),
                                                          rows_to_tensor(masks, device)),
                                      p + 1 == passes.size()));
    }
    clock.end("layers");
    const auto placed = place(passes, rows_todo.size());
    keep_all(rows_todo.size(), [&](size_t i) { return rows_todo[i].q; }, [&](size_t i) {
      const auto& r = rows_todo[i];
      const auto& at = places[placed[i].pass][placed[i].row];
      return window_output(logits[placed[i].pass], placed[i].row, r.d, r.w, at.first, at.second);
    });
  }

  std::vector<std::vector<Answer>> results(outputs.size());
  at::parallel_for(0, outputs.size(), 8, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) results[q] = pool_answers(outputs[q], docs, options_.decode);
  });
  clock.end("decode");
  return results;
}

// ---------------------------------------------------------------------------------------------------
// ResidentCache

ResidentCache::ResidentCache(const cache::CacheReader& cache, std::shared_ptr<const Model> model)
    : impl_(std::make_unique<Impl>()) {
  if (!model) throw std::invalid_argument("ResidentCache needs a model");
  if (cache.metadata().model_hash != model->content_hash())
    throw std::invalid_argument("the cache was made by model " + cache.metadata().model_hash + ", not " + model->content_hash());
  c10::InferenceMode inference;
  const c10::Device device = device_of(*model);
  const int64_t hidden = cache.metadata().hidden_size, n = cache.num_windows();
  // Read in parts of about 64 MiB of rows, each uploaded and cut to its real rows on the device.
  std::vector<at::Tensor> parts;
  impl_->first_row.reserve(n);
  int64_t total = 0;
  for (int64_t w = 0; w < n;) {
    std::vector<int64_t> windows;
    int64_t longest = 1;
    for (; w < n && static_cast<int64_t>(windows.size()) * cache.metadata().document_block * hidden < (int64_t(16) << 20); ++w) {
      windows.push_back(w);
      longest = std::max(longest, cache.window(w).rows);
    }
    std::vector<int64_t> real;
    for (size_t i = 0; i < windows.size(); ++i) {
      impl_->first_row.push_back(total);
      for (int64_t r = 0; r < cache.window(windows[i]).rows; ++r) real.push_back(static_cast<int64_t>(i) * longest + r);
      total += cache.window(windows[i]).rows;
    }
    auto states = cached_states(cache, windows, longest, *model).view({-1, hidden});
    parts.push_back(states.index_select(0, indices_on(real, device)));
  }
  parts.push_back(at::zeros({1, hidden}, at::TensorOptions(dtype_of(*model)).device(device)));
  try {
    impl_->rows = at::cat(parts);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot hold the cache's " + std::to_string(total) + " rows on " + device.str() + ": " +
                             e.what_without_backtrace());
  }
  impl_->cache = &cache;
  impl_->model = std::move(model);
}

ResidentCache::~ResidentCache() = default;
const cache::CacheReader& ResidentCache::cache() const { return *impl_->cache; }
const Model& ResidentCache::model() const { return *impl_->model; }
int64_t ResidentCache::bytes() const { return impl_->rows.numel() * impl_->rows.element_size(); }

}  // namespace deformer
