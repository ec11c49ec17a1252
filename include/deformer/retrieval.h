#pragma once
// Questions over a whole cache: a BM25 full-text index of the cached documents picks the few a question is read
// over, and the answers of all of them are ranked by one score (BERTserini: Yang et al., NAACL 2019 demo).
//
//   auto cache = deformer::cache::CacheReader::open("corpus.h5", deformer::expected_cache_metadata(*model, k));
//   auto index = deformer::retrieval::TextIndex::open(deformer::retrieval::index_path("corpus.h5"), *cache);
//   auto answers = deformer::retrieval::retrieve_and_read(reader, *index, *cache, {"Who lit the lamp?"});
//   // answers[0][0].answer, .doc, .score (combined), .logits (reader), .retrieval_score (BM25)
//
// The index is an SQLite FTS5 table (Debian's libsqlite3) over each document's title and text: BM25 ranking,
// Porter stemming, Unicode case folding with diacritics removed. CacheBuilder writes it beside the cache
// (`<cache>.bm25`), in a temporary file renamed into place after the cache; merge_shards' CLI merges the shards'
// indexes into one, so that BM25's document statistics are those of the whole corpus. An index records how many
// documents it holds and a fingerprint of their ids, and opening it against a cache refuses one of other documents.
//
// Thread safety: a TextIndex's const members may be called from several threads at once (its SQLite connection is
// serialised); a TextIndexWriter is used by one thread.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deformer/decode.h"

namespace deformer {

class Reader;
namespace cache {
class CacheReader;
}

namespace retrieval {

inline constexpr const char* kIndexFormatName = "libdeformer-text-index";
inline constexpr int kIndexFormatVersion = 1;

// Where the index of the cache (or merged cache index) at `cache_path` lives: "<cache_path>.bm25".
std::string index_path(const std::string& cache_path);

// Order-free fingerprint of a set of document ids: an index and a cache of the same documents agree on it.
uint64_t id_fingerprint(const std::vector<std::string>& ids);

class TextIndexWriter {
 public:
  // Writes to a temporary file next to `path`; std::runtime_error when it cannot be created.
  static std::unique_ptr<TextIndexWriter> create(const std::string& path);
  // Without commit(), removes the temporary file: a previous index at `path` stays.
  ~TextIndexWriter();
  TextIndexWriter(const TextIndexWriter&) = delete;
  TextIndexWriter& operator=(const TextIndexWriter&) = delete;

  // Adds a document; std::invalid_argument for an empty id. The title may be empty.
  void add(const std::string& id, const std::string& title, const std::string& text);
  // Adds every document of the index file at `path` (merging shards' indexes); std::runtime_error for a file that is
  // not an index.
  void add_all(const std::string& path);
  // Completes the index, syncs it and renames it to its path.
  void commit();
  int64_t documents() const;

  struct Impl;

 private:
  explicit TextIndexWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct Hit {
  std::string id;
  double score = 0;  // BM25, higher is better (SQLite's bm25() negated)
};

struct DocumentTitle {
  std::string id;
  std::string title;
};

class TextIndex {
 public:
  // Opens an index for reading. std::runtime_error for a missing file, one that is not a complete index, or a
  // format version this library does not know.
  static std::unique_ptr<TextIndex> open(const std::string& path);
  // As above, and refuses (std::runtime_error, naming both counts) an index whose documents are not the cache's.
  static std::unique_ptr<TextIndex> open(const std::string& path, const cache::CacheReader& cache);
  ~TextIndex();
  TextIndex(const TextIndex&) = delete;
  TextIndex& operator=(const TextIndex&) = delete;

  // The `limit` documents that match the query best, best first. Every word of the query is optional (an OR
  // query); an empty query, or one with no indexed word, finds nothing.
  std::vector<Hit> search(const std::string& query, int limit) const;
  // Every document's id and title, in the order they were added.
  std::vector<DocumentTitle> documents() const;
  int64_t num_documents() const;
  uint64_t fingerprint() const;

  struct Impl;

 private:
  explicit TextIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct RetrievalOptions {
  int documents = 20;          // documents retrieved for each question and read by the reader
  // mu in BERTserini's score (1 - mu) * BM25 + mu * reader logits, which unlike the reader's own probabilities
  // compares answers of different documents. 0.5: the best of 0, 0.1, 0.3, ..., 1 on SQuAD v1.1 train questions
  // over a corpus of train paragraphs, with the bundled model (benchmarks/results/open-squad/), never on dev.
  double reader_weight = 0.5;
};

// Throws std::invalid_argument for documents < 1 or a reader weight outside [0, 1].
void validate(const RetrievalOptions& options);

// The `documents` best documents of each question (TextIndex::search for each).
std::vector<std::vector<Hit>> retrieve(const TextIndex& index, const std::vector<std::string>& questions,
                                       int documents);

// For each question, the reader's answers over each of its retrieved documents (the reader's top_k per document),
// each with its document's BM25 score in retrieval_score and its score left as the reader gave it. One batched
// Reader::ask call reads them all. The reader must be in deformer mode at the cache's k, as for Reader::ask.
std::vector<std::vector<Answer>> read_retrieved(const Reader& reader, const cache::CacheReader& cache,
                                                const std::vector<std::string>& questions,
                                                const std::vector<std::vector<Hit>>& hits);

// Ranks one question's answers from read_retrieved: score becomes (1 - w) * retrieval_score + w * logits, best
// first, cut to top_k. Empty (null) answers are dropped: across documents, "no answer here" is not an answer.
std::vector<Answer> rank_answers(std::vector<Answer> answers, double reader_weight, int top_k);

// retrieve, read_retrieved and rank_answers, with the reader's top_k.
std::vector<std::vector<Answer>> retrieve_and_read(const Reader& reader, const TextIndex& index,
                                                   const cache::CacheReader& cache,
                                                   const std::vector<std::string>& questions,
                                                   const RetrievalOptions& options = {});

}  // namespace retrieval
}  // namespace deformer
