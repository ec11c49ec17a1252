#pragma once
// Building a document cache from a model (docs/design.md, 'Document cache'): tokenize, window, run layers 0..k-1
// on each document window, store the layer-k states, and index the texts for retrieval (deformer/retrieval.h). No
// torch types here.
//
//   auto model = deformer::Model::load("model.pt");
//   deformer::CacheBuilder builder(model, "corpus.h5", {});   // k = the model's trained split, fp32 storage
//   builder.add({"doc-1", text});                              // batched internally across documents
//   builder.commit();                                          // corpus.h5 and corpus.h5.bm25 appear only now
//
// Thread safety: a CacheBuilder is used by one thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "deformer/cache.h"
#include "deformer/model.h"
#include "deformer/types.h"

namespace deformer {

struct CacheBuildOptions {
  int k = -1;                                         // split layer; -1: the model's trained split, as Reader does
  int window_stride = 0;                              // tokens between window starts; 0 = the model's (128)
  cache::StateDType dtype = cache::StateDType::kFloat32;  // storage dtype of the states
  int batch_size = 32;                                // windows per forward pass
  int64_t max_document_tokens = 100000;               // longer documents throw (ReaderOptions says why); 0: no limit
  cache::WriterOptions writer;                        // HDF5 chunking and compression
  bool text_index = true;                             // also write the BM25 index <path>.bm25 (deformer/retrieval.h)
  // Polled before each forward pass and each document (a signal handler's flag, say): once it returns true, add(),
  // flush() and commit() throw BuildInterrupted, so that a stop waits for one pass at most, even inside one long
  // document. Empty: never stops.
  std::function<bool()> stop_requested;
};

// Thrown when CacheBuildOptions::stop_requested says to stop; the builder then writes nothing more.
struct BuildInterrupted : std::runtime_error {
  BuildInterrupted()
      : std::runtime_error("interrupted: no cache was written (a previous file at the output path is untouched)") {}
};

// The metadata a cache made by `model` at split k must carry; CacheReader::open(path, expected) refuses others.
cache::CacheMetadata expected_cache_metadata(const Model& model, int k);

// The metadata a CacheBuilder with these options writes (k and window stride resolved as the builder does); a
// complete cache with other metadata was built otherwise. Throws as the CacheBuilder constructor does.
cache::CacheMetadata build_metadata(const Model& model, const CacheBuildOptions& options);

// The documents a build reads, in order: calls `emit` once per document (a JSONL file, a directory, SQuAD).
using DocumentSource = std::function<void(const std::function<void(Document&&)>&)>;

// Why the complete cache at `path` does not hold what a CacheBuilder with these options would write from
// `documents` ("" when it does): another model, k or tokenizer, another window stride or storage dtype, no retrieval
// index of its documents (with options.text_index), damage, or other documents than those of `documents` that
// belong to `shard`, in their order and with their texts. A shard job that finds "" skips its build. Reads
// `documents` once; never throws for what it finds in the file (the reason is returned).
std::string built_otherwise(const std::string& path, const Model& model, const CacheBuildOptions& options,
                            const DocumentSource& documents, const cache::ShardSpec& shard = {});

// Identifies the tokenizer (vocabulary and case handling) that produced a cache's tokens and offsets.
std::string tokenizer_hash(const Model& model);

class CacheBuilder {
 public:
  // Throws std::invalid_argument for k out of range, a stride not smaller than the window, batch_size < 1.
  CacheBuilder(std::shared_ptr<const Model> model, const std::string& path, CacheBuildOptions options = {});
  ~CacheBuilder();  // without commit(): no file appears, a previous file at `path` stays

  // Queues a document; its states are computed when enough windows are queued, or at commit(). Throws
  // std::invalid_argument for an empty, token-less or non-UTF-8 document and for a duplicate id.
  void add(const Document& document);
  // Encodes and writes what is queued (commit() does this too), so that a caller can stop between the last batch
  // and the file's completion, as on a signal that arrived during that batch.
  void flush();
  // Encodes what is queued, then completes the file and renames it to `path`.
  void commit();

  int64_t documents() const;  // documents written so far
  int64_t windows() const;    // windows written so far
  int split_layer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace deformer
