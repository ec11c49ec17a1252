#pragma once
// deformer::Reader: questions in, answers with character offsets out (docs/design.md, 'Layouts' and 'Decoding').
//
//   auto model = deformer::Model::load("model.pt");
//   deformer::Reader reader(model);                      // deformer mode at the model's trained split
//   auto answers = reader.ask("Who lit the lamp?", {{"lighthouse", text}});
//   // answers[0].answer, .score, .start, .end (code points into text), .doc
//
// Deformer mode encodes the question's lower layers once, the documents' windows separately (or takes their
// states from a cache), and runs the upper layers on [question ; window] in batches. Full mode is standard
// BERT QA with Hugging Face's windowing (max_seq_len 384, overlap doc_stride 128, question cut to 64 tokens).
//
// Thread safety: a Reader is immutable; ask() is const and may run on several threads at once, sharing the
// model. No torch types in this header.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "deformer/decode.h"
#include "deformer/model.h"
#include "deformer/types.h"

namespace deformer {

class Tokenizer;
namespace cache {
class CacheReader;
}
class ResidentCache;

enum class Mode { kDeformer, kFull };
const char* to_string(Mode mode);
// "deformer" or "full"; throws std::invalid_argument otherwise.
Mode parse_mode(const std::string& text);

struct ReaderOptions {
  Mode mode = Mode::kDeformer;  // decomposed (DeFormer) or standard full-attention BERT
  int k = -1;                   // split layer in deformer mode; -1: the model's trained split, else 3/4 of the layers
  int batch_size = 32;          // most windows per forward pass
  // Longest document read from raw text, in tokens (about 4 characters each): all of a document's windows are in
  // memory at once (100,000 tokens: about 780 windows). 0: no limit. Longer ones throw std::invalid_argument.
  int64_t max_document_tokens = 100000;
  // What one forward pass costs beyond its tokens, in tokens: a call's rows are sorted by length and split into
  // passes that minimise padded tokens plus this per pass (deformer/layout.h plan_batches). -1: on a GPU 8192
  // (small passes waste its width; measured on an H200), 64 on the CPU (padding is the waste there). BERT's
  // questions are packed several to a row instead; other models' question passes cost 512 on a GPU (CUDA graphs).
  int pass_cost_tokens = -1;
  DecodeOptions decode;         // answer decoding semantics and limits
  // Receives warnings (a question cut to the question block); nullptr prints them to stderr.
  std::function<void(const std::string&)> warn;
  // Profiling: called on the asking thread with each phase of a call and its seconds: "tokenize", "documents"
  // (tokenizing them, or their tokens from the cache), "cache_read" (states read and uploaded, or gathered on the
  // device), "lower_layers", "upper_layers" (full mode: "layers"; both with the logits' copy to the host) and
  // "decode". The device is synchronised at the end of each phase so that the phases add up to the call, which
  // costs GPU calls their overlap; unset (the default), nothing is timed.
  std::function<void(const char* phase, double seconds)> on_phase;
};

// One question of a batch of independent questions, over the documents it names.
struct Query {
  std::string question;
  std::vector<std::string> doc_ids;  // documents this question is asked over; empty = every document of the call
};

class Reader {
 public:
  // Throws std::invalid_argument for options the model cannot honour (k out of range, batch_size < 1, top_k < 1).
  explicit Reader(std::shared_ptr<const Model> model, ReaderOptions options = {});
  ~Reader();

  // Answers `question` over `documents`, best first (at most top_k). Throws std::invalid_argument for an
  // empty question, an empty or non-UTF-8 document, or duplicate document ids.
  std::vector<Answer> ask(const std::string& question, const std::vector<Document>& documents) const;

  // Answers several questions over the same documents. In deformer mode the documents' lower layers run
  // once for all questions and each question's once for all windows; the upper layers run on batches of
  // (question, window) pairs. Result i belongs to questions[i].
  std::vector<std::vector<Answer>> ask(const std::vector<std::string>& questions,
                                       const std::vector<Document>& documents) const;

  // Deformer mode over cached documents (all of them when doc_ids is empty): their layer-k states are read
  // from the cache instead of computed. Open the cache with CacheReader::open(path,
  // expected_cache_metadata(model, k)) (deformer/cache_builder.h) so that a cache of another model, k or
  // tokenizer is refused with the field named. Throws std::invalid_argument in full mode, for a cache of
  // another k or model, and for unknown document ids.
  std::vector<std::vector<Answer>> ask(const std::vector<std::string>& questions, const cache::CacheReader& cache,
                                       const std::vector<std::string>& doc_ids = {}) const;

  // Independent questions, each over its own documents (a server's queue, or SQuAD's questions over their own
  // paragraphs), batched together: the upper layers (deformer mode) or all layers (full mode) run on
  // batch_size (question, window) pairs at a time across questions, and each document's lower layers run once
  // however many questions name it. Result i belongs to queries[i]. Throws std::invalid_argument for an unknown
  // document id, besides the errors of the other overloads.
  std::vector<std::vector<Answer>> ask(const std::vector<Query>& queries, const std::vector<Document>& documents) const;
  // The same over cached documents: only the documents the queries name are read (every cached document when a
  // query names none).
  std::vector<std::vector<Answer>> ask(const std::vector<Query>& queries, const cache::CacheReader& cache) const;
  // The same over a cache whose states are held on the model's device (see ResidentCache). Also throws
  // std::invalid_argument when `resident` was made for a model on another device or in another dtype.
  std::vector<std::vector<Answer>> ask(const std::vector<Query>& queries, const ResidentCache& resident) const;

  const ReaderOptions& options() const { return options_; }
  int split_layer() const { return k_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  // scope[q] lists the documents question q is asked over; an empty scope asks every question over every document.
  std::vector<std::vector<Answer>> answer(const std::vector<std::string>& questions,
                                          const std::vector<Document>& documents, const cache::CacheReader* cache,
                                          const std::vector<std::vector<size_t>>& scope = {},
                                          const ResidentCache* resident = nullptr) const;
  void check_cache(const cache::CacheReader& cache) const;

  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  ReaderOptions options_;
  int k_ = 0;
};

// A cache's states held on a model's device, for serving a corpus from GPU memory: deformer mode then gathers each
// call's windows there instead of reading them from the file and uploading them per call. Made once, reading every
// window; holds every real row in the model's compute dtype (BERT-base fp16: 1.5 KB a row; SQuAD v1.1 dev's
// 2,067 paragraphs at k=9 about 0.5 GB). `cache` must outlive it: document texts and tokens still come from there.
// Immutable once made: any number of threads may ask over one.
class ResidentCache {
 public:
  // Throws std::invalid_argument for a cache of another model (as Reader::ask does) and std::runtime_error when
  // the device cannot hold it or a read fails.
  ResidentCache(const cache::CacheReader& cache, std::shared_ptr<const Model> model);
  ~ResidentCache();
  ResidentCache(const ResidentCache&) = delete;
  ResidentCache& operator=(const ResidentCache&) = delete;

  const cache::CacheReader& cache() const;
  const Model& model() const;
  // Device bytes the states take.
  int64_t bytes() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace deformer
