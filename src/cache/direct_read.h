#pragma once
// Private: rows of a cache's datasets read with pread() at chunk addresses located once at open, without HDF5 or
// its lock, where the file is laid out as this library's writer lays it out; through H5Dread otherwise.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "cache/hdf5.h"

namespace deformer {
namespace cache {
namespace detail {

// A read-only file descriptor, closed with its owner.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~FileDescriptor() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// A descriptor of the very file HDF5 opened (not of whatever the path names a moment later), or none where
// HDF5 does not do POSIX I/O on it. Under the lock.
FileDescriptor duplicate_descriptor(hid_t file);
// Addresses of 8 bytes, counted from the file's first byte (no user block), as this library's writer makes them
// and the chunk index reader expects. Under the lock.
bool plain_addresses(hid_t file);

// Whole rows of a rank-1 or rank-2 dataset, as `memory_type`. Where HDF5 would only copy bytes (chunked, no
// filters, rows whole within chunks, every chunk allocated, stored bit for bit as `memory_type`), rows come
// from pread() on the shard's descriptor at chunk addresses located once at open: no HDF5 call and no lock,
// so threads read in parallel, straight into the caller's buffer. Anything else (gzip, a layout, type or byte
// order this library's writer does not produce) goes through H5Dread under the lock.
class RowReader {
 public:
  RowReader() = default;
  // `stored_type` is the type this library's writer stores; `fd` < 0 disables direct reads. Under the lock.
  RowReader(Hid dataset, Hid memory_type, hid_t stored_type, int fd, int64_t file_size, std::string what);

  bool valid() const { return dataset_.valid(); }  // false for an optional dataset the file lacks
  int64_t rows() const { return rows_; }
  int64_t cols() const { return static_cast<int64_t>(cols_); }
  bool direct() const { return direct_; }
  // Rows [first, first + count) into `out`; std::runtime_error when the file ends early or a read fails.
  void read(int64_t first, int64_t count, void* out) const;

 private:
  bool locate_chunks(int64_t file_size);

  Hid dataset_, memory_type_;
  int rank_ = 1;
  hsize_t cols_ = 1;
  int64_t rows_ = 0;
  int64_t row_bytes_ = 0;
  int64_t chunk_rows_ = 0;
  std::vector<uint64_t> chunk_address_;
  int fd_ = -1;
  bool direct_ = false;
  std::string what_;  // "'<path>' <dataset>", for messages
};

}  // namespace detail
}  // namespace cache
}  // namespace deformer
