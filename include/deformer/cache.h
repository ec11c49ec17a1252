#pragma once
// The document cache (docs/design.md, 'Document cache'): layer-k states of document windows in HDF5.
//
// No torch types here: states cross this API as row-major float32 rows, so the cache tools and readers
// that only move bytes do not pull in LibTorch.
//
// File layout (format "libdeformer-cache", version 1). Root attributes hold CacheMetadata plus
// "complete" (1 once committed) and the counts. Datasets, all appended as documents arrive:
//   /documents/id_span     int64 [D, 2]   byte range of the id in /documents/id_bytes
//   /documents/text_span   int64 [D, 2]   byte range of the original UTF-8 text in /documents/text_bytes
//   /documents/token_span  int64 [D, 2]   range of the document's tokens in /tokens/char_offsets
//   /documents/window_span int64 [D, 2]   range of the document's windows in /windows/*
//   /tokens/char_offsets   int32 [T, 2]   per-token [begin, end) in code points of the document text
//   /tokens/word           int32 [T]      per-token word index (answers align to whole words); -1 = not recorded.
//                                         Optional: files written before it existed lack it
//   /windows/token_span    int64 [W, 2]   document tokens [begin, end) of the window
//   /windows/row_span      int64 [W, 2]   [first row, row count) of the window in /states/values
//   /states/values         fp32|fp16|bf16|int8 [R, H]  ragged: only real rows, no padding
//   /states/scale          float32 [R]    int8 only: per-row absmax / 127
//   /windows/checksum      int64 [W]      XXH3-64 of the window's stored rows of /states/values, then of its scales
//   /documents/checksum    int64 [D, 3]   XXH3-64 of the document's text bytes, its char_offsets rows, its word rows
// and the root attribute "tables_checksum": XXH3-64 of the XXH3-64s of id_bytes, the four /documents spans and the
// two /windows spans, which a reader holds from open on. Checksums are stored as int64 bit patterns. Files
// written before them lack all three and are read unverified (CacheReader::checksums()).
// fp16 is the IEEE binary16 layout and bf16 the top half of binary32, both declared as HDF5 float types
// so that h5py and h5dump read them as floats.
//
// Thread safety: every HDF5 call in this library goes through one process-wide mutex, because a
// libhdf5 built without --enable-threadsafe must never be entered by two threads, and a thread-safe one
// takes a global lock anyway. A CacheReader's const members may be called from several threads at once.
// Raw (unfiltered) datasets are read without HDF5 once open (see ReadOptions::direct_reads), so such
// reads take no lock and run in parallel; gzip-compressed datasets go through H5Dread and overlap only in
// dequantisation. A CacheWriter is used by one thread at a time.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deformer/types.h"
#include "deformer/shards.h"
#include "deformer/version.h"

namespace deformer {
namespace cache {

inline constexpr const char* kFormatName = "libdeformer-cache";
inline constexpr int kFormatVersion = 1;
inline constexpr const char* kIndexFormatName = "libdeformer-cache-index";

enum class StateDType { kFloat32, kFloat16, kBFloat16, kInt8 };
const char* to_string(StateDType dtype);
// Parses "fp32", "fp16", "bf16", "int8"; throws std::invalid_argument naming the bad value.
StateDType parse_state_dtype(const std::string& text);

struct CacheMetadata {
  std::string format_name = kFormatName;         // identifies the file as a libdeformer cache
  int format_version = kFormatVersion;           // layout version; readers refuse versions they do not know
  std::string model_hash;                        // Model::content_hash() of the model that made the states
  std::string model_type = "bert";               // ModelConfig::model_type
  std::string joint_order = "question,document"; // the upper layers' joint row; XLNet: "document,question"
  int k = 0;                                     // states are the output of layers 0..k-1
  int hidden_size = 0;                           // columns of every state row
  int question_block = 27;                       // question block the upper layers will be paired with
  int document_block = 293;                      // document block; a window has at most this many real rows
  int window_stride = 128;                       // tokens between window starts
  StateDType state_dtype = StateDType::kFloat32; // storage dtype of the states
  std::string tokenizer_hash;                    // identifies the tokenizer that produced tokens and offsets
  std::string library_version = version();       // libdeformer that wrote the file (informational)
};

using deformer::CharSpan;  // [begin, end) in code points of the document text (deformer/types.h)

// One window of a document as the writer receives it.
struct WindowStates {
  TokenSpan tokens;               // document tokens [begin, end) the window covers
  int64_t rows = 0;               // real rows of the document block (tokens + [SEP]); padding is not stored
  const float* states = nullptr;  // rows x hidden_size, row-major float32, caller-owned during add_document
};

struct WriterOptions {
  int chunk_rows = 0;   // rows per HDF5 chunk; 0 = document_block, so a window spans at most two chunks
  int gzip_level = 0;   // 0 stores raw: gzip+shuffle saves only ~15% (fp16), ~29% (bf16), ~9% (int8) of
                        // layer-k states, for 10-30x slower writes and ~15x slower reads (cache_bench)
  bool shuffle = true;  // byte shuffle before gzip; ignored when gzip_level is 0
};

class CacheWriter {
 public:
  // Writes to a temporary file next to `path`; the final name appears only in commit(). Throws
  // std::invalid_argument for inconsistent metadata and std::runtime_error when the file cannot be created.
  static std::unique_ptr<CacheWriter> create(const std::string& path, const CacheMetadata& metadata,
                                             const WriterOptions& options = {});
  // Without commit(), removes the temporary file: an interrupted build leaves no file under the final
  // name and a previous complete cache there untouched.
  ~CacheWriter();
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  // Appends a document. Throws std::invalid_argument for a duplicate or empty id, an empty text, no
  // tokens or windows, offsets or spans out of range, rows outside 1..document_block, non-finite states.
  // token_words: the word index of each token (0-based, non-decreasing), which answers are aligned to; empty
  // stores none, and readers then re-tokenize the document for it.
  void add_document(const std::string& id, const std::string& text, const std::vector<CharSpan>& token_offsets,
                    const std::vector<WindowStates>& windows, const std::vector<int32_t>& token_words = {});
  // Marks the file complete, syncs it to disk and renames it to the final path (replacing any file there).
  void commit();

  const CacheMetadata& metadata() const;
  int64_t num_documents() const;
  int64_t num_windows() const;
  int64_t num_rows() const;
  const std::string& temporary_path() const;

  struct Impl;

 private:
  explicit CacheWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct DocumentInfo {
  std::string id;
  int64_t first_window = 0;  // global window index of the document's first window
  int64_t num_windows = 0;
  int64_t num_tokens = 0;
};

struct WindowInfo {
  int64_t document = 0;  // document index
  TokenSpan tokens;      // document tokens [begin, end)
  int64_t rows = 0;      // real rows; read_windows zero-fills the rest of the document block
};

struct ReadOptions {
  // Threads that one large read_windows call spreads its windows over, the calling thread included; a call
  // uses one per MiB it reads at most, so small calls stay on the caller's thread. 0 = the hardware threads,
  // at most 8.
  int read_threads = 0;
  // Raw datasets (the writer's default, no gzip) are read with pread() on the file at chunk addresses located
  // once at open, bypassing HDF5 and its lock; anything else (gzip, or a layout, type or byte order this
  // library's writer does not produce) through H5Dread, as is everything with a libhdf5 other than 1.10 (the
  // chunk index is located through 1.10's object addresses). false sends every read through H5Dread, to compare.
  bool direct_reads = true;
  // Every read is checked against the stored checksums (the tables at open, a document's text, offsets and words
  // when read, a window's states when read); a mismatch throws std::runtime_error naming the cache, document and
  // part. false skips them, for trusted files and to measure their cost. States of files without checksums are
  // refused when non-finite either way, and every file's offsets and word indices are range-checked.
  bool verify_checksums = true;
};

// Reads one cache file, or a merged view of shards through an index file written by merge_shards().
//
// A shard file replaced under an open reader (a rebuild renaming a new file over it) keeps being read as the
// file that was opened; one changed in place (truncated, rewritten) is refused by the next read with a
// std::runtime_error that says so.
class CacheReader {
 public:
  // Opens without checking what produced the cache (for inspection tools). Throws std::runtime_error for
  // a missing file, a file that is not HDF5 or not a cache, a truncated or incomplete file, an unknown
  // format version, and inconsistent tables.
  static std::unique_ptr<CacheReader> open(const std::string& path);
  // As above, and also refuses a cache whose model hash, model type, k, hidden size, tokenizer hash or
  // block sizes differ from `expected`, naming the field and both values. Stride and storage dtype are not
  // compared: windows carry their own spans and every dtype reads back as float32.
  static std::unique_ptr<CacheReader> open(const std::string& path, const CacheMetadata& expected);
  // Both of the above with options for how states are read; std::invalid_argument for negative read_threads.
  static std::unique_ptr<CacheReader> open(const std::string& path, const ReadOptions& options);
  static std::unique_ptr<CacheReader> open(const std::string& path, const CacheMetadata& expected,
                                           const ReadOptions& options);
  ~CacheReader();
  CacheReader(const CacheReader&) = delete;
  CacheReader& operator=(const CacheReader&) = delete;

  const CacheMetadata& metadata() const;
  int64_t num_documents() const;
  int64_t num_windows() const;
  int64_t num_shards() const;
  // True when every shard stores checksums (files of this version); older files are read unverified.
  bool checksums() const;
  // True when every shard's states (and int8 scales) are read without HDF5 (ReadOptions::direct_reads).
  bool direct_reads() const;
  std::vector<std::string> document_ids() const;
  // Document index of `id`; throws std::invalid_argument naming an unknown id.
  int64_t find(const std::string& id) const;
  // Bounds-checked accessors (std::out_of_range).
  const DocumentInfo& document(int64_t index) const;
  const WindowInfo& window(int64_t index) const;
  std::string document_text(int64_t index) const;
  std::vector<CharSpan> token_offsets(int64_t index) const;
  // Word index of each token; empty when the cache does not record words (written without them, or before they
  // were stored).
  std::vector<int32_t> token_words(int64_t index) const;

  // Dequantises the given windows into out, laid out [windows.size(), document_block, hidden_size]
  // float32; rows past a window's real rows are zeros. Reads in file order whatever the request order.
  void read_windows(const std::vector<int64_t>& windows, float* out) const;
  // Floats read_windows writes for n windows.
  int64_t window_floats() const;
  // As read_windows, with `rows_per_window` rows per window in `out` ([windows.size(), rows_per_window, hidden_size]):
  // a batch needs only its longest window's rows. Throws std::invalid_argument when a window has more real rows.
  void read_windows(const std::vector<int64_t>& windows, int64_t rows_per_window, float* out) const;
  // The same without conversion for fp16 and bf16 caches: the stored 16-bit values (IEEE binary16, or the top half
  // of binary32), ready to upload to a model computing in that dtype. std::invalid_argument for other dtypes.
  void read_windows_16bit(const std::vector<int64_t>& windows, int64_t rows_per_window, uint16_t* out) const;

  struct Impl;

 private:
  void read_rows(const std::vector<int64_t>& windows, int64_t rows_per_window, void* out, bool as_stored) const;
  explicit CacheReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True when `path` is a committed cache (or a readable index); false for anything else, never throws.
// Lets a shard job skip work that already finished.
bool is_complete(const std::string& path);
// Removes the temporary files of `path` (a cache, or any file written the same way, such as its retrieval index) left
// by writers that died, killed or with their machine: a job that skips a finished shard calls it, since no writer of
// that path will run again to do it.
void remove_stale_temporaries(const std::string& path);

// Writes a JSON index listing the shard files (paths stored relative to the index's directory) after
// opening every shard: each must be complete, agree on the metadata (all but library_version) and share no
// document id. CacheReader::open(index) then reads across shards. Written to a temporary name and renamed.
void merge_shards(const std::string& index_path, const std::vector<std::string>& shard_paths);

}  // namespace cache
}  // namespace deformer
