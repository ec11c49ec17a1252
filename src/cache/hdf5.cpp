#include "cache/hdf5.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace deformer {
namespace cache {
namespace detail {

std::recursive_mutex& h5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

namespace {
// Collects the innermost messages of the error stack.
herr_t collect_error(unsigned n, const H5E_error2_t* error, void* data) {
  auto* text = static_cast<std::string*>(data);
  if (n < 3 && error->desc && *error->desc) {
    if (!text->empty()) text->append("; ");
    text->append(error->desc);
  }
  return 0;
}
}  // namespace

std::string h5_error_text() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "unknown HDF5 error" : text;
}

void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

// HDF5 closes what is still open in an atexit handler; after a write failed on a full disk, that close crashed
// (SIGSEGV in H5F__close_cb, exit 139, after the error was printed). Nothing here needs it: a committed file is
// closed by commit(), and an uncommitted one is a temporary that its writer removes. So HDF5 registers none. It
// must be said before the library's first HDF5 call, hence at load.
namespace {
[[maybe_unused]] const bool kNoHdf5Atexit = [] { return H5dont_atexit() >= 0; }();
}  // namespace

// errno is cleared before each write, so what it holds after one that failed is that write's cause.
std::string write_error_cause() {
  const int error = errno;
  if (error == ENOSPC || error == EDQUOT || error == EFBIG || error == EIO)
    return std::system_category().message(error) + ": ";
  return "";
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + h5_error_text()); }

hid_t check_id(hid_t id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}
void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

Hid file_access() {
  Hid fapl(check_id(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate"), H5Pclose);
  // Keep HDF5's file locks, but do not fail on file systems without locking (NFS, some Lustre mounts):
  // shard jobs on a cluster write there.
  H5Pset_file_locking(fapl.get(), 1, 1);
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_EARLIEST, H5F_LIBVER_V18);
  return fapl;
}

namespace {
// The 2-byte storage dtypes declared as HDF5 floats (sign at bit 15, the exponent above the mantissa), so that
// generic tools decode them.
Hid two_byte_float_type(size_t exponent_bits, size_t mantissa_bits, size_t exponent_bias, const std::string& name) {
  Hid t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  check(H5Tset_fields(t.get(), 15, mantissa_bits, exponent_bits, 0, mantissa_bits), "H5Tset_fields(" + name + ")");
  check(H5Tset_size(t.get(), 2), "H5Tset_size(" + name + ")");
  check(H5Tset_ebias(t.get(), exponent_bias), "H5Tset_ebias(" + name + ")");
  return t;
}
}  // namespace

Hid state_type(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return Hid(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
    case StateDType::kFloat16: return two_byte_float_type(5, 10, 15, "fp16");
    case StateDType::kBFloat16: return two_byte_float_type(8, 7, 127, "bf16");
    case StateDType::kInt8: return Hid(H5Tcopy(H5T_STD_I8LE), H5Tclose);
  }
  throw std::logic_error("state_type");
}

Hid copy_type(hid_t type) { return Hid(check_id(H5Tcopy(type), "H5Tcopy"), H5Tclose); }

void write_string_attribute(hid_t object, const char* name, const std::string& value) {
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(type.get(), std::max<size_t>(value.size(), 1)), "H5Tset_size");
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset");
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  if (H5Aexists(object, name) > 0) H5Adelete(object, name);
  Hid attr(check_id(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), name), H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr.get(), type.get(), padded.data()), name);
}

void write_int_attribute(hid_t object, const char* name, int64_t value) {
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  if (H5Aexists(object, name) > 0) H5Adelete(object, name);
  Hid attr(check_id(H5Acreate2(object, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), name),
           H5Aclose);
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), name);
}

bool has_attribute(hid_t object, const char* name) { return H5Aexists(object, name) > 0; }

std::string read_string_attribute(hid_t object, const char* name, const std::string& path) {
  if (!has_attribute(object, name)) throw std::runtime_error("'" + path + "' lacks the attribute '" + name + "'");
  Hid attr(check_id(H5Aopen(object, name, H5P_DEFAULT), name), H5Aclose);
  Hid type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0)
    throw std::runtime_error("'" + path + "': attribute '" + name + "' is not a fixed-length string");
  std::string value(H5Tget_size(type.get()), '\0');
  check(H5Aread(attr.get(), type.get(), value.data()), name);
  value.resize(std::strlen(value.c_str()));
  return value;
}

int64_t read_int_attribute(hid_t object, const char* name, const std::string& path) {
  if (!has_attribute(object, name)) throw std::runtime_error("'" + path + "' lacks the attribute '" + name + "'");
  Hid attr(check_id(H5Aopen(object, name, H5P_DEFAULT), name), H5Aclose);
  Hid type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw std::runtime_error("'" + path + "': attribute '" + name + "' is not an integer");
  int64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), name);
  return value;
}

Appender::Appender(hid_t parent, const char* name, hid_t file_type, hid_t mem_type, hsize_t cols, hsize_t chunk_rows,
         int gzip_level, bool shuffle)
    : mem_type_(mem_type), cols_(cols) {
  const int rank = cols ? 2 : 1;
  hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols}, chunk[2] = {chunk_rows, cols};
  Hid space(check_id(H5Screate_simple(rank, dims, maxdims), name), H5Sclose);
  Hid dcpl(check_id(H5Pcreate(H5P_DATASET_CREATE), name), H5Pclose);
  check(H5Pset_chunk(dcpl.get(), rank, chunk), name);
  if (gzip_level > 0) {
    if (shuffle) check(H5Pset_shuffle(dcpl.get()), name);
    check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(gzip_level)), name);
  }
  // Never written twice, so HDF5 need not pre-fill chunks with zeros.
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
  dataset_ = Hid(check_id(H5Dcreate2(parent, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                          name),
                 H5Dclose);
}

void Appender::append(const void* data, hsize_t rows) {
  if (rows == 0) return;
  const int rank = cols_ ? 2 : 1;
  hsize_t extent[2] = {size_ + rows, cols_};
  errno = 0;
  check(H5Dset_extent(dataset_.get(), extent), "H5Dset_extent");
  Hid file_space(check_id(H5Dget_space(dataset_.get()), "H5Dget_space"), H5Sclose);
  hsize_t start[2] = {size_, 0}, count[2] = {rows, cols_};
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), "select");
  Hid mem_space(check_id(H5Screate_simple(rank, count, nullptr), "H5Screate_simple"), H5Sclose);
  errno = 0;
  if (H5Dwrite(dataset_.get(), mem_type_, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0)
    fail(write_error_cause() + "H5Dwrite");
  size_ += rows;
}

std::vector<int64_t> read_table(hid_t file, const char* name, hsize_t cols, const std::string& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw std::runtime_error("'" + path + "' lacks the dataset '" + std::string(name) + "'");
  Hid dataset(check_id(H5Dopen2(file, name, H5P_DEFAULT), "'" + path + "': " + name), H5Dclose);
  Hid space(H5Dget_space(dataset.get()), H5Sclose);
  hsize_t dims[2] = {0, 0};
  const int rank = H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  if (rank != (cols ? 2 : 1) || (cols && dims[1] != cols))
    throw std::runtime_error("'" + path + "': dataset '" + name + "' has an unexpected shape");
  std::vector<int64_t> values(dims[0] * (cols ? cols : 1));
  if (!values.empty())
    check(H5Dread(dataset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
          "'" + path + "': cannot read " + name);
  return values;
}

hsize_t dataset_rows(hid_t dataset) {
  Hid space(H5Dget_space(dataset), H5Sclose);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  return dims[0];
}

Hid open_dataset(hid_t file, const char* name, const std::string& path, size_t cache_bytes) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0 && std::strchr(name + 1, '/')) {
    std::string group(name, std::strchr(name + 1, '/'));
    if (H5Lexists(file, group.c_str(), H5P_DEFAULT) <= 0)
      throw std::runtime_error("'" + path + "' lacks the group '" + group + "'");
  }
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw std::runtime_error("'" + path + "' lacks the dataset '" + std::string(name) + "'");
  Hid dataset(check_id(H5Dopen2(file, name, H5P_DEFAULT), "'" + path + "': cannot open " + name), H5Dclose);
  if (!cache_bytes) return dataset;
  Hid dcpl(H5Dget_create_plist(dataset.get()), H5Pclose);
  const bool filtered = H5Pget_nfilters(dcpl.get()) > 0;
  // Compressed chunks: a few chunks of cache, so that a chunk shared by consecutive windows is inflated
  // once. Raw chunks: no cache, so that HDF5 reads only a window's rows from the file instead of both
  // whole chunks the window straddles.
  Hid dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
  H5Pset_chunk_cache(dapl.get(), filtered ? 521 : 0, filtered ? cache_bytes : 0, 1.0);
  dataset.reset();
  return Hid(check_id(H5Dopen2(file, name, dapl.get()), "'" + path + "': cannot open " + name), H5Dclose);
}

}  // namespace detail
}  // namespace cache
}  // namespace deformer
