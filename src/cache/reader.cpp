// CacheReader: one cache file, or the shards an index lists, read as one; every read checked against the stored
// checksums.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "cache/checksums.h"
#include "cache/codec.h"
#include "cache/direct_read.h"
#include "cache/hdf5.h"
#include "cache/merge.h"
#include "cache/metadata.h"
#include "deformer/cache.h"

namespace deformer {
namespace cache {

using namespace detail;

namespace {

struct Shard {
  std::string path;
  CacheMetadata metadata;
  Hid file;
  FileDescriptor fd;  // HDF5's own descriptor of the file, duplicated; none where HDF5 does no POSIX I/O
  int64_t size = 0;   // with the modification time, as at open: a file edited in place is refused
  timespec modified{};
  RowReader values, scales, text_bytes, char_offsets, token_words;  // token_words: absent in older files
  int64_t num_rows = 0;
  bool checksummed = false;  // files written before checksums existed are read unverified

  // Before every read: chunk addresses and tables were read at open, and bytes of an edited file would be
  // garbage, or missing past a new end. A file renamed over this one is another inode and does not matter.
  void check_unchanged() const {
    if (fd.get() < 0) return;
    struct stat now {};
    if (::fstat(fd.get(), &now) != 0) {
      const int error = errno;
      throw std::runtime_error("cannot stat cache '" + path + "': " + std::system_category().message(error));
    }
    if (now.st_size != size)
      throw std::runtime_error("cache '" + path + "' changed on disk after it was opened (" + std::to_string(size) +
                               " bytes then, " + std::to_string(now.st_size) + " now); open it again");
    if (now.st_mtim.tv_sec != modified.tv_sec || now.st_mtim.tv_nsec != modified.tv_nsec)
      throw std::runtime_error("cache '" + path +
                               "' changed on disk after it was opened (modified since); open it again");
  }
};

// Runs body(begin, end) over [0, n) cut into `parts` contiguous ranges, the calling thread taking the first,
// and rethrows the first exception of any range once all have finished.
void run_in_parts(int64_t n, int parts, const std::function<void(int64_t, int64_t)>& body) {
  if (parts <= 1) return body(0, n);
  std::vector<std::exception_ptr> errors(parts);
  auto part = [&](int p) {
    try {
      body(n * p / parts, n * (p + 1) / parts);
    } catch (...) {
      errors[p] = std::current_exception();
    }
  };
#ifdef _OPENMP
  // OpenMP's threads persist between calls: a batch's read does not pay for starting threads.
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int p = 0; p < parts; ++p) part(p);
#else
  std::vector<std::thread> threads;
  for (int p = 1; p < parts; ++p) {
    try {
      threads.emplace_back(part, p);
    } catch (const std::system_error&) {  // no thread to be had: the caller reads that part too
      part(p);
    }
  }
  part(0);
  for (auto& t : threads) t.join();
#endif
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

struct CacheReader::Impl {
  CacheMetadata metadata;
  std::vector<Shard> shards;
  std::vector<DocumentInfo> documents;
  std::vector<WindowInfo> windows;
  // Per document: shard, [text byte begin, end), [token begin, end) within that shard.
  std::vector<int> document_shard;
  std::vector<std::array<int64_t, 4>> document_spans;
  std::vector<int64_t> window_first_row;  // within the window's shard
  // Stored checksums (zeros for a shard without them): per window, and per document of its text, token offsets
  // and word indices.
  std::vector<uint64_t> stored_window_checksum;
  std::vector<std::array<uint64_t, 3>> stored_document_checksum;
  // Windows whose states matched their checksum once: hashing costs about what the read itself does, so a window
  // read again (a server's hot documents) is not hashed again. The file's size and mtime are still checked on every
  // read, so an edit is noticed; damage that appears on the disk under an open reader, after a window's first read,
  // is not.
  mutable std::unique_ptr<std::atomic<bool>[]> window_verified;
  std::unordered_map<std::string, int64_t> by_id;
  ReadOptions options;
  int read_threads = 1;

  // Opens one cache file and appends its tables to the global ones.
  void add_shard(const std::string& path);
  // Window w into `target` ([block, hidden] of the output dtype): its stored rows, converted unless 16-bit
  // rows are wanted as stored, then zeros. `staging` and `scales` are the calling thread's buffers.
  void read_window(int64_t w, int64_t block, bool as_stored, uint8_t* target, std::vector<uint8_t>& staging,
                   std::vector<float>& scales) const;
  const Shard& shard_of_document(int64_t d) const { return shards[document_shard[d]]; }
  bool verifies(const Shard& shard) const { return shard.checksummed && options.verify_checksums; }
  // Throws naming the cache, the document and what of it does not match its checksum.
  void check_document_part(int64_t d, int part, const void* data, size_t bytes) const;
  [[noreturn]] void damaged(int64_t d, const std::string& what) const;
};

void CacheReader::Impl::damaged(int64_t d, const std::string& what) const {
  throw std::runtime_error("cache '" + shard_of_document(d).path + "' is damaged: document '" + documents[d].id +
                           "': " + what + " (deformer-cache verify lists every damaged part)");
}

void CacheReader::Impl::check_document_part(int64_t d, int part, const void* data, size_t bytes) const {
  static const char* const names[3] = {"the text", "the token offsets", "the word indices"};
  if (verifies(shard_of_document(d)) && deformer::detail::checksum(data, bytes) != stored_document_checksum[d][part])
    damaged(d, std::string(names[part]) + " do not match their checksum");
}

namespace {

// Opens one shard file: HDF5's handle, a duplicate of its descriptor with the size and time it had, and the
// metadata; std::runtime_error unless it is a complete cache. Under the lock.
Shard open_shard_file(const std::string& path) {
  require_cache_file(path);
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  H5Eclear2(H5E_DEFAULT);
  if (is_hdf5 <= 0) throw std::runtime_error("'" + path + "' is not an HDF5 file");
  Shard shard;
  shard.path = path;
  Hid fapl = file_access();
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (file < 0)
    throw std::runtime_error("cannot open cache '" + path + "' (truncated or damaged HDF5 file?): " + h5_error_text());
  shard.file = Hid(file, H5Fclose);
  shard.fd = duplicate_descriptor(file);
  if (shard.fd.get() >= 0) {
    struct stat status {};
    if (::fstat(shard.fd.get(), &status) != 0) {
      const int error = errno;
      throw std::runtime_error("cannot stat cache '" + path + "': " + std::system_category().message(error));
    }
    shard.size = status.st_size;
    shard.modified = status.st_mtim;
  }
  shard.metadata = read_metadata(file, path);
  if (!has_attribute(file, "complete") || read_int_attribute(file, "complete", path) != 1)
    throw std::runtime_error("cache '" + path + "' is incomplete: its build did not finish");
  const CacheMetadata& m = shard.metadata;
  if (m.hidden_size <= 0 || m.document_block <= 0)
    throw std::runtime_error("'" + path + "' declares hidden size " + std::to_string(m.hidden_size) +
                             " and document block " + std::to_string(m.document_block));
  return shard;
}

// The datasets read on demand: states (and int8 scales), text bytes, token offsets and word indices. Under the lock.
void open_row_readers(Shard& shard, bool direct_reads) {
  const std::string& path = shard.path;
  const hid_t file = shard.file.get();
  const CacheMetadata& m = shard.metadata;
  const int fd = direct_reads && plain_addresses(file) ? shard.fd.get() : -1;
  auto rows_of = [&](Hid dataset, Hid memory_type, hid_t stored_type, const char* name) {
    return RowReader(std::move(dataset), std::move(memory_type), stored_type, fd, shard.size,
                     "'" + path + "' " + name);
  };
  const size_t row_bytes = m.hidden_size * element_size(m.state_dtype);
  Hid values = open_dataset(file, "/states/values", path, 4 * m.document_block * row_bytes);
  Hid value_type(check_id(H5Dget_type(values.get()), "'" + path + "': states"), H5Tclose);
  if (H5Tget_size(value_type.get()) != element_size(m.state_dtype))
    throw std::runtime_error("'" + path + "': states are not stored as " + to_string(m.state_dtype));
  {
    Hid space(H5Dget_space(values.get()), H5Sclose);
    hsize_t dims[2] = {0, 0};
    if (H5Sget_simple_extent_ndims(space.get()) != 2) throw std::runtime_error("'" + path + "': states are not 2-d");
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    if (dims[1] != static_cast<hsize_t>(m.hidden_size))
      throw std::runtime_error("'" + path + "': states have " + std::to_string(dims[1]) + " columns, hidden size is " +
                               std::to_string(m.hidden_size));
    shard.num_rows = static_cast<int64_t>(dims[0]);
  }
  // fp32 and int8 arrive as native values, whatever the file declares; 16-bit states as stored.
  Hid memory_type = m.state_dtype == StateDType::kFloat32 ? copy_type(H5T_NATIVE_FLOAT)
                    : m.state_dtype == StateDType::kInt8  ? copy_type(H5T_NATIVE_INT8)
                                                          : std::move(value_type);
  shard.values = rows_of(std::move(values), std::move(memory_type), state_type(m.state_dtype).get(), "/states/values");
  if (m.state_dtype == StateDType::kInt8) {
    shard.scales = rows_of(open_dataset(file, "/states/scale", path, 4 * m.document_block * 4),
                           copy_type(H5T_NATIVE_FLOAT), H5T_IEEE_F32LE, "/states/scale");
    if (shard.scales.rows() != shard.num_rows)
      throw std::runtime_error("'" + path + "': int8 scales do not match the state rows");
  }
  shard.text_bytes = rows_of(open_dataset(file, "/documents/text_bytes", path), copy_type(H5T_NATIVE_UINT8),
                             H5T_STD_U8LE, "/documents/text_bytes");
  shard.char_offsets = rows_of(open_dataset(file, "/tokens/char_offsets", path), copy_type(H5T_NATIVE_INT32),
                               H5T_STD_I32LE, "/tokens/char_offsets");
  // Word indices came after version 1's first files: a cache without them is read, and its documents re-tokenized
  // by the reader for whole-word answers.
  if (H5Lexists(file, "/tokens/word", H5P_DEFAULT) > 0) {
    shard.token_words = rows_of(open_dataset(file, "/tokens/word", path), copy_type(H5T_NATIVE_INT32), H5T_STD_I32LE,
                                "/tokens/word");
    if (shard.token_words.cols() != 1 || shard.token_words.rows() != shard.char_offsets.rows())
      throw std::runtime_error("cache '" + path + "' is inconsistent: word indices do not match the tokens");
  }
  if (shard.text_bytes.cols() != 1 || shard.char_offsets.cols() != 2 || shard.scales.cols() != 1)
    throw std::runtime_error("cache '" + path +
                             "' is inconsistent: text, token offsets or scales have an unexpected shape");
}

// The tables a reader holds from open on, as stored, with their stored checksums (empty in older files).
struct ShardTables {
  std::string id_bytes;
  std::vector<int64_t> id_span, text_span, token_span, window_span, window_tokens, row_span;
  std::vector<int64_t> window_sums, document_sums;
  int64_t num_documents() const { return static_cast<int64_t>(id_span.size() / 2); }
  int64_t num_windows() const { return static_cast<int64_t>(window_tokens.size() / 2); }
};

[[noreturn]] void inconsistent(const std::string& path, const std::string& what) {
  throw std::runtime_error("cache '" + path + "' is inconsistent: " + what);
}

// Reads the tables, checks their lengths against each other and the counts, and (when `verify`) their checksum.
// Sets shard.checksummed. Under the lock.
ShardTables read_shard_tables(Shard& shard, bool verify) {
  const std::string& path = shard.path;
  const hid_t file = shard.file.get();
  ShardTables t;
  auto id_bytes_set = open_dataset(file, "/documents/id_bytes", path);
  t.id_bytes.assign(dataset_rows(id_bytes_set.get()), '\0');
  if (!t.id_bytes.empty())
    check(H5Dread(id_bytes_set.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.id_bytes.data()),
          "'" + path + "': cannot read document ids");
  t.id_span = read_table(file, "/documents/id_span", 2, path);
  t.text_span = read_table(file, "/documents/text_span", 2, path);
  t.token_span = read_table(file, "/documents/token_span", 2, path);
  t.window_span = read_table(file, "/documents/window_span", 2, path);
  t.window_tokens = read_table(file, "/windows/token_span", 2, path);
  t.row_span = read_table(file, "/windows/row_span", 2, path);
  const auto documents = static_cast<size_t>(t.num_documents()), windows = static_cast<size_t>(t.num_windows());
  if (t.text_span.size() / 2 != documents || t.token_span.size() / 2 != documents ||
      t.window_span.size() / 2 != documents || t.row_span.size() / 2 != windows)
    inconsistent(path, "table lengths differ");
  if (read_int_attribute(file, "num_documents", path) != t.num_documents() ||
      read_int_attribute(file, "num_windows", path) != t.num_windows() ||
      read_int_attribute(file, "num_rows", path) != shard.num_rows)
    inconsistent(path, "counts differ from the tables");

  // Checksums: in every file this version writes. A file written before them is read unverified.
  shard.checksummed = H5Lexists(file, "/windows/checksum", H5P_DEFAULT) > 0;
  if (!shard.checksummed) return t;
  if (!has_attribute(file, "tables_checksum")) inconsistent(path, "it has window checksums but no tables checksum");
  t.window_sums = read_table(file, "/windows/checksum", 0, path);
  t.document_sums = read_table(file, "/documents/checksum", 3, path);
  if (t.window_sums.size() != windows || t.document_sums.size() / 3 != documents)
    inconsistent(path, "checksum tables differ in length from the tables");
  auto digest = [](const auto& table) {
    return deformer::detail::checksum(table.data(), table.size() * sizeof(table[0]));
  };
  if (verify && TableDigests::combine({digest(t.id_bytes), digest(t.id_span), digest(t.text_span),
                                       digest(t.token_span), digest(t.window_span), digest(t.window_tokens),
                                       digest(t.row_span)}) !=
                    static_cast<uint64_t>(read_int_attribute(file, "tables_checksum", path)))
    throw std::runtime_error("cache '" + path + "' is damaged: its document and window tables do not match their "
                             "checksum");
  return t;
}

}  // namespace

void CacheReader::Impl::add_shard(const std::string& path) {
  Lock lock(h5_mutex());
  silence_hdf5();
  Shard shard = open_shard_file(path);
  open_row_readers(shard, options.direct_reads);
  const ShardTables t = read_shard_tables(shard, options.verify_checksums);
  const int64_t text_size = shard.text_bytes.rows(), num_tokens = shard.char_offsets.rows();
  const int64_t num_documents = t.num_documents(), num_windows = t.num_windows();
  const int shard_index = static_cast<int>(shards.size());
  const int64_t window_base = static_cast<int64_t>(windows.size());
  auto in_range = [](int64_t begin, int64_t end, int64_t size) { return 0 <= begin && begin <= end && end <= size; };
  for (int64_t d = 0; d < num_documents; ++d) {
    const int64_t* is = &t.id_span[2 * d];
    const int64_t* ts = &t.text_span[2 * d];
    const int64_t* ks = &t.token_span[2 * d];
    const int64_t* ws = &t.window_span[2 * d];
    if (!in_range(is[0], is[1], t.id_bytes.size()) || !in_range(ts[0], ts[1], text_size) ||
        !in_range(ks[0], ks[1], num_tokens) || !in_range(ws[0], ws[1], num_windows))
      inconsistent(path, "document " + std::to_string(d) + " points outside the tables");
    DocumentInfo info;
    info.id = t.id_bytes.substr(is[0], is[1] - is[0]);
    info.first_window = window_base + ws[0];
    info.num_windows = ws[1] - ws[0];
    info.num_tokens = ks[1] - ks[0];
    if (!by_id.emplace(info.id, static_cast<int64_t>(documents.size())).second)
      throw std::runtime_error("document id '" + info.id + "' appears twice (again in '" + path + "')");
    for (int64_t w = ws[0]; w < ws[1]; ++w) {
      const int64_t* tok = &t.window_tokens[2 * w];
      const int64_t* row = &t.row_span[2 * w];
      if (!in_range(tok[0], tok[1], info.num_tokens) || row[1] < 1 || row[1] > shard.metadata.document_block ||
          !in_range(row[0], row[0] + row[1], shard.num_rows))
        inconsistent(path, "window " + std::to_string(w) + " points outside the tables");
    }
    document_shard.push_back(shard_index);
    document_spans.push_back({ts[0], ts[1], ks[0], ks[1]});
    if (shard.checksummed)
      stored_document_checksum.push_back({static_cast<uint64_t>(t.document_sums[3 * d]),
                                          static_cast<uint64_t>(t.document_sums[3 * d + 1]),
                                          static_cast<uint64_t>(t.document_sums[3 * d + 2])});
    else
      stored_document_checksum.push_back({0, 0, 0});
    documents.push_back(std::move(info));
  }
  for (int64_t w = 0; w < num_windows; ++w) {
    WindowInfo info;
    info.document = -1;
    info.tokens = {t.window_tokens[2 * w], t.window_tokens[2 * w + 1]};
    info.rows = t.row_span[2 * w + 1];
    windows.push_back(info);
    window_first_row.push_back(t.row_span[2 * w]);
    stored_window_checksum.push_back(shard.checksummed ? static_cast<uint64_t>(t.window_sums[w]) : 0);
  }
  for (int64_t d = documents.size() - num_documents; d < static_cast<int64_t>(documents.size()); ++d)
    for (int64_t w = 0; w < documents[d].num_windows; ++w) windows[documents[d].first_window + w].document = d;
  for (int64_t w = window_base; w < static_cast<int64_t>(windows.size()); ++w)
    if (windows[w].document < 0) inconsistent(path, "window " + std::to_string(w - window_base) + " belongs to no document");
  shards.push_back(std::move(shard));
}

CacheReader::CacheReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheReader::~CacheReader() = default;

std::unique_ptr<CacheReader> CacheReader::open(const std::string& path) { return open(path, ReadOptions()); }

std::unique_ptr<CacheReader> CacheReader::open(const std::string& path, const CacheMetadata& expected) {
  return open(path, expected, ReadOptions());
}

std::unique_ptr<CacheReader> CacheReader::open(const std::string& path, const ReadOptions& options) {
  if (options.read_threads < 0)
    throw std::invalid_argument("ReadOptions::read_threads must not be negative, got " +
                                std::to_string(options.read_threads));
  require_cache_file(path);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // Past ~8 threads, copies out of the page cache are bound by memory bandwidth, and the caller's other
  // threads (tokenising, the model) need cores too.
  impl->read_threads = options.read_threads ? options.read_threads
                                            : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  if (looks_like_index(path)) {
    for (const auto& shard : read_index(path)) {
      impl->add_shard(shard);
      const auto& first = impl->shards.front().metadata;
      const auto& last = impl->shards.back().metadata;
      const auto diff = differences(last, first, true);
      if (!diff.empty())
        throw std::runtime_error("shard '" + shard + "' of '" + path + "' disagrees with '" +
                                 impl->shards.front().path + "': " + join(diff, "; "));
    }
  } else {
    impl->add_shard(path);
  }
  impl->metadata = impl->shards.front().metadata;
  impl->window_verified = std::make_unique<std::atomic<bool>[]>(impl->windows.size());  // value-initialised: false
  return std::unique_ptr<CacheReader>(new CacheReader(std::move(impl)));
}

std::unique_ptr<CacheReader> CacheReader::open(const std::string& path, const CacheMetadata& expected,
                                               const ReadOptions& options) {
  auto reader = open(path, options);
  const auto diff = differences(reader->metadata(), expected, false);
  if (!diff.empty())
    throw std::runtime_error("cache '" + path + "' does not match the model: " + join(diff, "; "));
  return reader;
}

const CacheMetadata& CacheReader::metadata() const { return impl_->metadata; }
int64_t CacheReader::num_documents() const { return impl_->documents.size(); }
int64_t CacheReader::num_windows() const { return impl_->windows.size(); }
int64_t CacheReader::num_shards() const { return impl_->shards.size(); }
bool CacheReader::checksums() const {
  for (const auto& shard : impl_->shards)
    if (!shard.checksummed) return false;
  return true;
}
bool CacheReader::direct_reads() const {
  for (const auto& shard : impl_->shards)
    if (!shard.values.direct() || (shard.metadata.state_dtype == StateDType::kInt8 && !shard.scales.direct()))
      return false;
  return true;
}
int64_t CacheReader::window_floats() const {
  return static_cast<int64_t>(impl_->metadata.document_block) * impl_->metadata.hidden_size;
}

std::vector<std::string> CacheReader::document_ids() const {
  std::vector<std::string> ids;
  ids.reserve(impl_->documents.size());
  for (const auto& d : impl_->documents) ids.push_back(d.id);
  return ids;
}

int64_t CacheReader::find(const std::string& id) const {
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) throw std::invalid_argument("document '" + id + "' is not in the cache");
  return it->second;
}

const DocumentInfo& CacheReader::document(int64_t index) const {
  if (index < 0 || index >= num_documents())
    throw std::out_of_range("document index " + std::to_string(index) + " is outside 0.." +
                            std::to_string(num_documents() - 1));
  return impl_->documents[index];
}

const WindowInfo& CacheReader::window(int64_t index) const {
  if (index < 0 || index >= num_windows())
    throw std::out_of_range("window index " + std::to_string(index) + " is outside 0.." +
                            std::to_string(num_windows() - 1));
  return impl_->windows[index];
}

std::string CacheReader::document_text(int64_t index) const {
  document(index);
  const Shard& shard = impl_->shards[impl_->document_shard[index]];
  const auto& span = impl_->document_spans[index];
  std::string text(span[1] - span[0], '\0');
  if (text.empty()) return text;
  shard.check_unchanged();
  shard.text_bytes.read(span[0], static_cast<int64_t>(text.size()), text.data());
  impl_->check_document_part(index, 0, text.data(), text.size());
  return text;
}

std::vector<CharSpan> CacheReader::token_offsets(int64_t index) const {
  document(index);
  const Shard& shard = impl_->shards[impl_->document_shard[index]];
  const auto& span = impl_->document_spans[index];
  std::vector<int32_t> raw(2 * (span[3] - span[2]));
  if (!raw.empty()) {
    shard.check_unchanged();
    shard.char_offsets.read(span[2], span[3] - span[2], raw.data());
  }
  impl_->check_document_part(index, 1, raw.data(), raw.size() * 4);
  // Also where no checksum says so (older files): offsets within the text, whose bytes bound its code points.
  const int64_t text_bytes = span[1] - span[0];
  std::vector<CharSpan> offsets(raw.size() / 2);
  for (size_t t = 0; t < offsets.size(); ++t) {
    offsets[t] = {raw[2 * t], raw[2 * t + 1]};
    if (offsets[t].begin < 0 || offsets[t].begin > offsets[t].end || offsets[t].end > text_bytes)
      impl_->damaged(index, "token " + std::to_string(t) + " has offsets [" + std::to_string(offsets[t].begin) + ", " +
                                std::to_string(offsets[t].end) + ") outside its text");
  }
  return offsets;
}

std::vector<int32_t> CacheReader::token_words(int64_t index) const {
  document(index);
  const Shard& shard = impl_->shards[impl_->document_shard[index]];
  const auto& span = impl_->document_spans[index];
  if (!shard.token_words.valid() || span[3] == span[2]) return {};
  std::vector<int32_t> words(span[3] - span[2]);
  shard.check_unchanged();
  shard.token_words.read(span[2], span[3] - span[2], words.data());
  impl_->check_document_part(index, 2, words.data(), words.size() * 4);
  const bool recorded = words.front() >= 0;  // -1 throughout: not recorded
  for (size_t t = 0; t < words.size(); ++t)
    if (recorded ? words[t] < 0 || words[t] > static_cast<int64_t>(t) || (t > 0 && words[t] < words[t - 1])
                 : words[t] != -1)
      impl_->damaged(index, "the word index of token " + std::to_string(t) + " (" + std::to_string(words[t]) +
                                ") is out of order");
  if (!recorded) return {};
  return words;
}

void CacheReader::read_windows(const std::vector<int64_t>& windows, float* out) const {
  read_windows(windows, impl_->metadata.document_block, out);
}

void CacheReader::read_windows(const std::vector<int64_t>& windows, int64_t rows_per_window, float* out) const {
  read_rows(windows, rows_per_window, out, false);
}

void CacheReader::read_windows_16bit(const std::vector<int64_t>& windows, int64_t rows_per_window, uint16_t* out) const {
  const StateDType dtype = impl_->metadata.state_dtype;
  if (dtype != StateDType::kFloat16 && dtype != StateDType::kBFloat16)
    throw std::invalid_argument(std::string("read_windows_16bit: the cache stores ") + to_string(dtype) + ", not fp16 or bf16");
  read_rows(windows, rows_per_window, out, true);
}

void CacheReader::Impl::read_window(int64_t w, int64_t block, bool as_stored, uint8_t* target,
                                    std::vector<uint8_t>& staging, std::vector<float>& scales) const {
  const Shard& shard = shards[document_shard[windows[w].document]];
  const StateDType dtype = metadata.state_dtype;
  const int64_t hidden = metadata.hidden_size, rows = windows[w].rows, first = window_first_row[w];
  const int64_t out_element = as_stored ? 2 : 4;
  // The stored bytes are the output for fp32, and for 16-bit states read as stored.
  const bool in_place = as_stored || dtype == StateDType::kFloat32;
  if (!in_place) staging.resize(std::max<size_t>(staging.size(), rows * hidden * element_size(dtype)));
  shard.values.read(first, rows, in_place ? static_cast<void*>(target) : staging.data());
  if (dtype == StateDType::kInt8) {
    scales.resize(std::max<size_t>(scales.size(), rows));
    shard.scales.read(first, rows, scales.data());
  }
  const uint8_t* stored = in_place ? target : staging.data();
  const int64_t d = windows[w].document;
  if (verifies(shard) && !window_verified[w].load(std::memory_order_relaxed)) {
    if (window_checksum(stored, rows * hidden * element_size(dtype), scales.data(), dtype == StateDType::kInt8 ? rows : 0) !=
        stored_window_checksum[w])
      damaged(d, "window " + std::to_string(w - documents[d].first_window) + ": its states do not match their checksum");
    window_verified[w].store(true, std::memory_order_relaxed);
  }
  if (!in_place) dequantise(dtype, staging.data(), scales.data(), rows, hidden, reinterpret_cast<float*>(target));
  // Without a checksum to vouch for them (older files), states are at least finite, as the writer made them: a NaN
  // would otherwise come out as an answer with a null score. With checksums and verification off, nothing is checked.
  if (!shard.checksummed && !all_finite(target, rows * hidden, as_stored ? dtype : StateDType::kFloat32))
    damaged(d, "window " + std::to_string(w - documents[d].first_window) + ": its states are not finite");
  // Zero padding rows (all-zero bits are +0.0 in fp32, fp16 and bf16 alike).
  std::fill(target + rows * hidden * out_element, target + block * hidden * out_element, uint8_t(0));
}

void CacheReader::read_rows(const std::vector<int64_t>& windows, int64_t rows_per_window, void* out, bool as_stored) const {
  if (windows.empty()) return;
  for (int64_t w : windows) {
    if (window(w).rows > rows_per_window)
      throw std::invalid_argument("read_windows: window " + std::to_string(w) + " has " + std::to_string(window(w).rows) +
                                  " rows, more than the " + std::to_string(rows_per_window) + " asked for");
  }
  if (!out) throw std::invalid_argument("read_windows: output buffer is null");
  const Impl& r = *impl_;
  const int64_t hidden = r.metadata.hidden_size, block = rows_per_window;
  const int64_t out_bytes = block * hidden * (as_stored ? 2 : 4);
  auto shard_of_window = [&](int64_t w) { return r.document_shard[r.windows[w].document]; };
  // File order (shard, first row) turns a random request into a forward sweep over the file.
  std::vector<size_t> order(windows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t wa = windows[a], wb = windows[b];
    return std::make_pair(shard_of_window(wa), r.window_first_row[wa]) <
           std::make_pair(shard_of_window(wb), r.window_first_row[wb]);
  });
  std::vector<bool> touched(r.shards.size());
  int64_t stored_bytes = 0;
  for (int64_t w : windows) {
    touched[shard_of_window(w)] = true;
    stored_bytes += r.windows[w].rows * hidden * static_cast<int64_t>(element_size(r.metadata.state_dtype));
  }
  for (size_t s = 0; s < touched.size(); ++s)
    if (touched[s]) r.shards[s].check_unchanged();
  // A thread per MiB at most: starting one costs tens of microseconds, reading a MiB a few hundred.
  const int64_t most = std::min<int64_t>(r.read_threads, static_cast<int64_t>(windows.size()));
  const int parts = static_cast<int>(std::clamp<int64_t>(stored_bytes >> 20, 1, most));
  run_in_parts(static_cast<int64_t>(order.size()), parts, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> staging;
    std::vector<float> scales;
    for (int64_t k = begin; k < end; ++k)
      r.read_window(windows[order[k]], block, as_stored, static_cast<uint8_t*>(out) + order[k] * out_bytes, staging,
                    scales);
  });
}

}  // namespace cache
}  // namespace deformer
