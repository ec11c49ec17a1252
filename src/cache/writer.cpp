// CacheWriter: documents and their window states appended to a temporary HDF5 file, renamed into place on commit.
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <unordered_set>

#include "cache/checksums.h"
#include "cache/codec.h"
#include "cache/hdf5.h"
#include "cache/metadata.h"
#include "deformer/cache.h"
#include "temporary_file.h"
#include "text/utf8.h"

namespace deformer {
namespace cache {

using namespace detail;

struct CacheWriter::Impl {
  CacheMetadata metadata;
  WriterOptions options;
  std::string path, temporary;
  Hid file;
  Hid value_type;
  Appender id_bytes, id_span, text_bytes, text_span, token_span, window_span, char_offsets, token_words,
      window_tokens, window_rows, values, scales, window_checksums, document_checksums;
  TableDigests tables;  // of the tables a reader holds from open on
  std::unordered_set<std::string> ids;
  int64_t documents = 0, windows = 0, rows = 0, tokens = 0, id_size = 0, text_size = 0;
  bool committed = false;
  bool failed = false;  // a write failed: the file is inconsistent, and only removed

  void close_all() {
    for (Appender* a : {&id_bytes, &id_span, &text_bytes, &text_span, &token_span, &window_span, &char_offsets,
                        &token_words, &window_tokens, &window_rows, &values, &scales, &window_checksums,
                        &document_checksums})
      a->close();
    value_type.reset();
    file.reset();
  }
};

CacheWriter::CacheWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CacheWriter::~CacheWriter() {
  if (!impl_) return;
  impl_->close_all();
  if (!impl_->committed) {
    std::error_code ignored;
    std::filesystem::remove(impl_->temporary, ignored);
  }
}

std::unique_ptr<CacheWriter> CacheWriter::create(const std::string& path, const CacheMetadata& metadata,
                                                 const WriterOptions& options) {
  validate_metadata(metadata);
  if (options.chunk_rows < 0) throw std::invalid_argument("chunk_rows must not be negative");
  if (options.gzip_level < 0 || options.gzip_level > 9)
    throw std::invalid_argument("gzip_level must be in 0..9, got " + std::to_string(options.gzip_level));
  if (path.empty()) throw std::invalid_argument("cache path is empty");
  auto impl = std::make_unique<Impl>();
  impl->metadata = metadata;
  impl->options = options;
  impl->path = path;
  deformer::detail::remove_stale_temporaries(path);
  impl->temporary = deformer::detail::temporary_name(path);
  std::unique_ptr<CacheWriter> writer(new CacheWriter(std::move(impl)));  // removes the temporary on throw
  Impl& w = *writer->impl_;

  Lock lock(h5_mutex());
  silence_hdf5();
  Hid fapl = file_access();
  w.file = Hid(check_id(H5Fcreate(w.temporary.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()),
                        "cannot create cache file '" + w.temporary + "'"),
               H5Fclose);
  write_metadata(w.file.get(), w.metadata);
  auto group = [&](const char* name) {
    return Hid(check_id(H5Gcreate2(w.file.get(), name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), name), H5Gclose);
  };
  Hid documents = group("documents"), tokens = group("tokens"), windows = group("windows"), states = group("states");
  const hsize_t table_chunk = 4096, byte_chunk = 1 << 16;
  const hsize_t hidden = static_cast<hsize_t>(metadata.hidden_size);
  const hsize_t state_chunk = options.chunk_rows ? options.chunk_rows : metadata.document_block;
  auto i64 = [](hid_t g, const char* name, hsize_t cols, hsize_t chunk) {
    return Appender(g, name, H5T_STD_I64LE, H5T_NATIVE_INT64, cols, chunk, 0, false);
  };
  auto bytes = [&](hid_t g, const char* name) {
    return Appender(g, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 0, byte_chunk, 0, false);
  };
  w.id_bytes = bytes(documents.get(), "id_bytes");
  w.text_bytes = bytes(documents.get(), "text_bytes");
  w.id_span = i64(documents.get(), "id_span", 2, table_chunk);
  w.text_span = i64(documents.get(), "text_span", 2, table_chunk);
  w.token_span = i64(documents.get(), "token_span", 2, table_chunk);
  w.window_span = i64(documents.get(), "window_span", 2, table_chunk);
  w.char_offsets = Appender(tokens.get(), "char_offsets", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, 1 << 14, 0, false);
  w.token_words = Appender(tokens.get(), "word", H5T_STD_I32LE, H5T_NATIVE_INT32, 0, 1 << 14, 0, false);
  w.window_tokens = i64(windows.get(), "token_span", 2, table_chunk);
  w.window_rows = i64(windows.get(), "row_span", 2, table_chunk);
  w.window_checksums = i64(windows.get(), "checksum", 0, table_chunk);
  w.document_checksums = i64(documents.get(), "checksum", 3, table_chunk);
  w.value_type = state_type(metadata.state_dtype);
  // The file type is also the memory type: values are already encoded, so HDF5 converts nothing.
  w.values = Appender(states.get(), "values", w.value_type.get(), w.value_type.get(), hidden, state_chunk,
                      options.gzip_level, options.shuffle);
  if (metadata.state_dtype == StateDType::kInt8)
    w.scales = Appender(states.get(), "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, state_chunk * 16,
                        options.gzip_level, options.shuffle);
  return writer;
}

void CacheWriter::add_document(const std::string& id, const std::string& text,
                               const std::vector<CharSpan>& token_offsets, const std::vector<WindowStates>& windows,
                               const std::vector<int32_t>& token_words) {
  Impl& w = *impl_;
  if (w.committed || !w.file.valid()) throw std::invalid_argument("add_document after commit()");
  if (id.empty()) throw std::invalid_argument("empty document id");
  auto bad = [&](const std::string& what) { throw std::invalid_argument("document '" + id + "': " + what); };
  if (w.ids.count(id)) bad("duplicate document id");
  if (text.empty()) bad("empty document text");
  if (token_offsets.empty()) bad("no tokens");
  if (windows.empty()) bad("no windows");
  const int64_t code_points = utf8::count_code_points(text);
  if (code_points > INT32_MAX) bad("text longer than 2^31 code points");
  const int64_t num_tokens = static_cast<int64_t>(token_offsets.size());
  std::vector<int32_t> offsets(2 * num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) {
    const CharSpan& s = token_offsets[t];
    if (s.begin < 0 || s.begin > s.end || s.end > code_points)
      bad("token " + std::to_string(t) + " offsets [" + std::to_string(s.begin) + ", " + std::to_string(s.end) +
          ") are outside the text of " + std::to_string(code_points) + " code points");
    offsets[2 * t] = static_cast<int32_t>(s.begin);
    offsets[2 * t + 1] = static_cast<int32_t>(s.end);
  }
  std::vector<int32_t> words(token_words.empty() ? num_tokens : 0, -1);  // -1: not recorded
  if (!token_words.empty()) {
    if (static_cast<int64_t>(token_words.size()) != num_tokens)
      bad(std::to_string(token_words.size()) + " word indices for " + std::to_string(num_tokens) + " tokens");
    for (int64_t t = 0; t < num_tokens; ++t)
      if (token_words[t] < 0 || (t > 0 && token_words[t] < token_words[t - 1]) || token_words[t] > t)
        bad("word indices must start at 0 and not decrease (token " + std::to_string(t) + ")");
    words = token_words;
  }
  const int64_t hidden = w.metadata.hidden_size, block = w.metadata.document_block;
  std::vector<int64_t> spans, row_spans, window_sums;
  std::vector<uint8_t> encoded;
  std::vector<float> scales;
  int64_t rows = 0;
  for (size_t i = 0; i < windows.size(); ++i) {
    const WindowStates& win = windows[i];
    const std::string which = "window " + std::to_string(i) + ": ";
    if (win.tokens.begin < 0 || win.tokens.begin >= win.tokens.end || win.tokens.end > num_tokens)
      bad(which + "token span [" + std::to_string(win.tokens.begin) + ", " + std::to_string(win.tokens.end) +
          ") is not a non-empty range of the " + std::to_string(num_tokens) + " tokens");
    if (win.rows < win.tokens.end - win.tokens.begin || win.rows > block)
      bad(which + std::to_string(win.rows) + " rows for " + std::to_string(win.tokens.end - win.tokens.begin) +
          " tokens (rows must cover the tokens and fit the document block of " + std::to_string(block) + ")");
    if (!win.states) bad(which + "states are null");
    // fp16 would silently turn values past 65504 into infinities that poison the upper layers.
    const float limit = w.metadata.state_dtype == StateDType::kFloat16 ? 65520.0f : INFINITY;
    for (int64_t j = 0; j < win.rows * hidden; ++j) {
      if (!std::isfinite(win.states[j])) bad(which + "non-finite state value at row " + std::to_string(j / hidden));
      if (std::fabs(win.states[j]) >= limit)
        bad(which + "state value " + std::to_string(win.states[j]) + " at row " + std::to_string(j / hidden) +
            " exceeds the fp16 range (65504); store fp32 or bf16");
    }
    const size_t encoded_before = encoded.size(), scales_before = scales.size();
    quantise(w.metadata.state_dtype, win.states, win.rows, hidden, encoded, scales);
    window_sums.push_back(static_cast<int64_t>(window_checksum(encoded.data() + encoded_before,
        encoded.size() - encoded_before, scales.data() + scales_before, scales.size() - scales_before)));
    spans.insert(spans.end(), {win.tokens.begin, win.tokens.end});
    row_spans.insert(row_spans.end(), {w.rows + rows, win.rows});
    rows += win.rows;
  }

  // Hashed before the lock, which every HDF5 call of the process waits for.
  const int64_t document_sums[3] = {static_cast<int64_t>(deformer::detail::checksum(text.data(), text.size())),
                                    static_cast<int64_t>(deformer::detail::checksum(offsets.data(), offsets.size() * 4)),
                                    static_cast<int64_t>(deformer::detail::checksum(words.data(), words.size() * 4))};

  Lock lock(h5_mutex());
  // A write that fails (a full disk) leaves the file's datasets of unequal lengths: the writer is then unusable.
  if (w.failed) throw std::runtime_error("cannot write cache '" + w.temporary + "': an earlier write failed");
  try {
    const int64_t id_span[2] = {w.id_size, w.id_size + static_cast<int64_t>(id.size())};
    const int64_t text_span[2] = {w.text_size, w.text_size + static_cast<int64_t>(text.size())};
    const int64_t token_span[2] = {w.tokens, w.tokens + num_tokens};
    const int64_t window_span[2] = {w.windows, w.windows + static_cast<int64_t>(windows.size())};
    w.id_bytes.append(id.data(), id.size());
    w.text_bytes.append(text.data(), text.size());
    w.id_span.append(id_span, 1);
    w.text_span.append(text_span, 1);
    w.token_span.append(token_span, 1);
    w.window_span.append(window_span, 1);
    w.char_offsets.append(offsets.data(), num_tokens);
    w.token_words.append(words.data(), num_tokens);
    w.window_tokens.append(spans.data(), windows.size());
    w.window_rows.append(row_spans.data(), windows.size());
    w.window_checksums.append(window_sums.data(), windows.size());
    w.document_checksums.append(document_sums, 1);
    w.tables.add(id, id_span, text_span, token_span, window_span, spans, row_spans);
    w.values.append(encoded.data(), rows);
    if (w.metadata.state_dtype == StateDType::kInt8) w.scales.append(scales.data(), rows);
    w.ids.insert(id);
    w.id_size += id.size();
    w.text_size += text.size();
    w.tokens += num_tokens;
    w.windows += windows.size();
    w.rows += rows;
    ++w.documents;
  } catch (const std::runtime_error& e) {
    w.failed = true;
    throw std::runtime_error("cannot write cache '" + w.temporary + "': " + e.what());
  }
}

void CacheWriter::commit() {
  Impl& w = *impl_;
  if (w.committed || !w.file.valid()) throw std::invalid_argument("commit() called twice");
  if (w.failed) throw std::runtime_error("cannot commit cache '" + w.temporary + "': an earlier write failed");
  {
    Lock lock(h5_mutex());
    write_int_attribute(w.file.get(), "num_documents", w.documents);
    write_int_attribute(w.file.get(), "num_windows", w.windows);
    write_int_attribute(w.file.get(), "num_rows", w.rows);
    write_int_attribute(w.file.get(), "tables_checksum", static_cast<int64_t>(w.tables.value()));
    write_int_attribute(w.file.get(), "complete", 1);
    errno = 0;
    if (H5Fflush(w.file.get(), H5F_SCOPE_GLOBAL) < 0) fail(write_error_cause() + "cannot flush '" + w.temporary + "'");
    w.close_all();
  }
  deformer::detail::publish(w.temporary, w.path);
  w.committed = true;
}

const CacheMetadata& CacheWriter::metadata() const { return impl_->metadata; }
int64_t CacheWriter::num_documents() const { return impl_->documents; }
int64_t CacheWriter::num_windows() const { return impl_->windows; }
int64_t CacheWriter::num_rows() const { return impl_->rows; }
const std::string& CacheWriter::temporary_path() const { return impl_->temporary; }

}  // namespace cache
}  // namespace deformer
