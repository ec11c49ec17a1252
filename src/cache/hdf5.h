#pragma once
// Private: the HDF5 plumbing of the cache (src/cache/): the process-wide lock, owned handles, errors as exceptions,
// attributes, and datasets appended to or read whole. Only src/cache/ includes <hdf5.h>.

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "deformer/cache.h"

namespace deformer {
namespace cache {
namespace detail {

// One lock for every HDF5 call in the process (see deformer/cache.h): recursive because helpers nest.
std::recursive_mutex& h5_mutex();
using Lock = std::lock_guard<std::recursive_mutex>;

// Owns an hid_t and closes it with the matching H5?close.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Hid(Hid&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Hid& operator=(Hid&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  ~Hid() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) {
      Lock lock(h5_mutex());
      close_(id_);
    }
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// The innermost messages of HDF5's error stack, which is then cleared.
std::string h5_error_text();
// HDF5 prints its error stack to stderr by default; errors become exceptions here instead.
void silence_hdf5();
// "No space left on device: " and the like where errno says why the last write failed, else "".
std::string write_error_cause();
[[noreturn]] void fail(const std::string& what);
hid_t check_id(hid_t id, const std::string& what);
void check(herr_t status, const std::string& what);
// File access properties of every cache file, written or read.
Hid file_access();
// The HDF5 type a storage dtype is written as (2-byte types declared as floats, so that generic tools decode them).
Hid state_type(StateDType dtype);
Hid copy_type(hid_t type);

void write_string_attribute(hid_t object, const char* name, const std::string& value);
void write_int_attribute(hid_t object, const char* name, int64_t value);
bool has_attribute(hid_t object, const char* name);
// Both throw std::runtime_error naming `path` when the attribute is missing or of another type.
std::string read_string_attribute(hid_t object, const char* name, const std::string& path);
int64_t read_int_attribute(hid_t object, const char* name, const std::string& path);

// An extendible dataset of rows (rank 1 when cols is 0, else [rows, cols]) appended to at its end.
class Appender {
 public:
  Appender() = default;
  Appender(hid_t parent, const char* name, hid_t file_type, hid_t mem_type, hsize_t cols, hsize_t chunk_rows,
           int gzip_level, bool shuffle);
  void append(const void* data, hsize_t rows);
  hsize_t size() const { return size_; }
  void close() { dataset_.reset(); }

 private:
  Hid dataset_;
  hid_t mem_type_ = -1;
  hsize_t cols_ = 0;
  hsize_t size_ = 0;
};

// A whole int64 table of `cols` columns (0: rank 1); std::runtime_error when missing or of another shape.
std::vector<int64_t> read_table(hid_t file, const char* name, hsize_t cols, const std::string& path);
hsize_t dataset_rows(hid_t dataset);
// Opens a dataset, naming the missing group or dataset; `cache_bytes` > 0 sizes the chunk cache for states.
Hid open_dataset(hid_t file, const char* name, const std::string& path, size_t cache_bytes = 0);

}  // namespace detail
}  // namespace cache
}  // namespace deformer
