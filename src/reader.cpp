#include "deformer/reader.h"

#include <torch/script.h>

#include <iostream>
#include <set>
#include <stdexcept>

#include "deformer/engine.h"
#include "deformer/layout.h"
#include "deformer/tokenizer.h"

namespace deformer {
namespace {

// A document tokenized once per ask(): ids, offsets, words and its windows.
struct PreparedDocument {
  const Document* source = nullptr;
  std::vector<int64_t> ids;
  TokenizedDocument tokens;
  std::vector<TokenSpan> windows;
};

// WordPiece continuation pieces ("##ing") belong to the word before them; every other token starts a word,
// which reproduces the pre-tokenizer words Hugging Face aligns answers to.
PreparedDocument prepare(const Document& doc, const Tokenizer& tokenizer) {
  if (doc.text.empty()) throw std::invalid_argument("document '" + doc.id + "' is empty");
  PreparedDocument p;
  p.source = &doc;
  Encoding enc;
  try {
    enc = tokenizer.encode(doc.text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("document '" + doc.id + "': " + e.what());
  }
  if (enc.ids.empty()) throw std::invalid_argument("document '" + doc.id + "' has no tokens (only whitespace or control characters)");
  p.ids.assign(enc.ids.begin(), enc.ids.end());
  int64_t word = -1;
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    if (tokenizer.id_to_token(enc.ids[i]).rfind("##", 0) != 0 || word < 0) ++word;
    p.tokens.word_of_token.push_back(word);
    p.tokens.offsets.emplace_back(enc.offsets[i].begin, enc.offsets[i].end);
  }
  return p;
}

at::Tensor rows_to_tensor(const std::vector<std::vector<int64_t>>& rows, const c10::Device& device) {
  const int64_t n = rows.size(), len = rows.front().size();
  auto t = torch::empty({n, len}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) std::copy(rows[i].begin(), rows[i].end(), t[i].data_ptr<int64_t>());
  return t.to(device);
}

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
  const auto& c = model_->config();
  const auto& special = tokenizer_->special_tokens();
  const c10::Device device = model_->options().device == Device::kCUDA
                                 ? c10::Device(c10::kCUDA, model_->options().device_index)
                                 : c10::Device(c10::kCPU);
  auto warn = [&](const std::string& message) {
    if (options_.warn) options_.warn(message);
    else std::cerr << "deformer: warning: " << message << std::endl;
  };

  Encoding q_enc;
  try {
    q_enc = tokenizer_->encode(question);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("question: ") + e.what());
  }
  if (q_enc.ids.empty()) throw std::invalid_argument("question is empty");
  std::vector<int64_t> q_ids(q_enc.ids.begin(), q_enc.ids.end());

  std::set<std::string> ids;
  std::vector<PreparedDocument> docs;
  docs.reserve(documents.size());
  for (const auto& d : documents) {
    if (!ids.insert(d.id).second) throw std::invalid_argument("duplicate document id '" + d.id + "'");
    docs.push_back(prepare(d, *tokenizer_));
  }

  // Window geometry of the mode.
  int window = 0, step = 0, context_offset = 0;
  Block question_row;
  if (options_.mode == Mode::kDeformer) {
    question_row = question_block(q_ids, c.question_block, special);
    if (question_row.truncated)
      warn("question of " + std::to_string(q_ids.size()) + " tokens cut to the question block's " +
           std::to_string(c.question_block - 2));
    window = c.document_block - 1;
    step = c.window_stride;
    context_offset = c.question_block;
  } else {
    if (q_ids.size() > static_cast<size_t>(c.max_question_len)) {
      warn("question of " + std::to_string(q_ids.size()) + " tokens cut to max_question_len " +
           std::to_string(c.max_question_len));
      q_ids.resize(c.max_question_len);
    }
    window = c.max_seq_len - static_cast<int>(q_ids.size()) - 3;
    if (window <= c.doc_stride)
      throw std::invalid_argument("a question of " + std::to_string(q_ids.size()) + " tokens leaves " + std::to_string(window) +
                                  " tokens per window, not more than the doc_stride overlap of " + std::to_string(c.doc_stride));
    step = window - c.doc_stride;
    context_offset = static_cast<int>(q_ids.size()) + 2;
  }
  std::vector<std::pair<size_t, TokenSpan>> work;  // (document, window)
  for (size_t d = 0; d < docs.size(); ++d) {
    docs[d].windows = document_windows(docs[d].ids.size(), window, step);
    for (const auto& w : docs[d].windows) work.emplace_back(d, w);
  }

  std::vector<WindowOutput> outputs(work.size());
  c10::InferenceMode inference;
  at::Tensor q_ids_t, q_states;
  if (options_.mode == Mode::kDeformer) {
    q_ids_t = rows_to_tensor({question_row.input_ids}, device);
    q_states = engine::encode_questions(*model_, q_ids_t, k_);  // once per question, whatever the windows
  }
  for (size_t first = 0; first < work.size(); first += options_.batch_size) {
    const size_t count = std::min<size_t>(options_.batch_size, work.size() - first);
    std::vector<std::vector<int64_t>> rows, types, masks;
    at::Tensor logits;
    if (options_.mode == Mode::kDeformer) {
      for (size_t i = 0; i < count; ++i) {
        const auto& [d, w] = work[first + i];
        std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
        rows.push_back(document_block(tokens, c.document_block, special).input_ids);
      }
      auto d_ids = rows_to_tensor(rows, device);
      auto d_states = engine::encode_documents(*model_, d_ids, k_);
      const int64_t b = count;
      logits = engine::answer_logits(*model_, q_states.expand({b, -1, -1}), q_ids_t.expand({b, -1}), d_states, d_ids, k_);
    } else {
      int64_t longest = 0;
      for (size_t i = 0; i < count; ++i) longest = std::max<int64_t>(longest, work[first + i].second.end - work[first + i].second.begin);
      // Padding to the batch's longest row instead of max_seq_len: padding never changes real positions.
      const int length = static_cast<int>(q_ids.size() + longest + 3);
      for (size_t i = 0; i < count; ++i) {
        const auto& [d, w] = work[first + i];
        std::vector<int64_t> tokens(docs[d].ids.begin() + w.begin, docs[d].ids.begin() + w.end);
        auto block = full_block(q_ids, tokens, length, c.max_question_len, special);
        rows.push_back(std::move(block.input_ids));
        types.push_back(std::move(block.token_type_ids));
        masks.push_back(std::move(block.attention_mask));
      }
      logits = engine::full_logits(*model_, rows_to_tensor(rows, device), rows_to_tensor(types, device),
                                   rows_to_tensor(masks, device));
    }
    auto cpu = logits.to(at::kCPU).contiguous();
    for (size_t i = 0; i < count; ++i) {
      auto& out = outputs[first + i];
      const auto& [d, w] = work[first + i];
      out.document = d;
      keep_logits(cpu, i, out);
      for (int64_t t = w.begin; t < w.end; ++t) out.scores.context_token[context_offset + (t - w.begin)] = t;
      out.scores.null_position = 0;  // [CLS]: the joint sequence's first position in both layouts
    }
  }

  // Decode each document over its windows, then pool the documents.
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
    for (const auto& span : decode_document(windows, docs[d].tokens, options_.decode)) {
      if (!span.null) {
        pooled.emplace_back(span, d);
      } else if (!have_null || span.score < null.score) {  // the null score is a minimum over all windows
        null = span;
        have_null = true;
      }
    }
  }
  if (have_null) pooled.emplace_back(null, docs.size());
  std::stable_sort(pooled.begin(), pooled.end(), [](const auto& a, const auto& b) { return a.first.score > b.first.score; });
  if (pooled.size() > static_cast<size_t>(options_.decode.top_k)) pooled.resize(options_.decode.top_k);
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

}  // namespace deformer
