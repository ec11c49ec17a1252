#include "deformer/cache.h"

#include "cache_codec.h"
#include "checksum.h"
#include "temporary_file.h"

#include <fcntl.h>
#include <hdf5.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace fs = std::filesystem;

namespace deformer {
namespace cache {
namespace {

// ---------------------------------------------------------------------------------------------------------
// HDF5 plumbing

// One lock for every HDF5 call in the process (see the header): recursive because helpers nest.
std::recursive_mutex& h5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}
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

// HDF5 prints its error stack to stderr by default; errors become exceptions here instead, carrying the
// innermost messages of the stack.
herr_t collect_error(unsigned n, const H5E_error2_t* error, void* data) {
  auto* text = static_cast<std::string*>(data);
  if (n < 3 && error->desc && *error->desc) {
    if (!text->empty()) text->append("; ");
    text->append(error->desc);
  }
  return 0;
}

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
const bool kNoHdf5Atexit = [] { return H5dont_atexit() >= 0; }();

// Why the last write failed, where the system said (errno is cleared before each write): a full disk, a quota,
// a file size limit, an I/O error.
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

// Float types of the 2-byte storage dtypes, declared as HDF5 floats so that generic tools decode them.
Hid half_type() {
  Hid t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  check(H5Tset_fields(t.get(), 15, 10, 5, 0, 10), "H5Tset_fields(fp16)");
  check(H5Tset_size(t.get(), 2), "H5Tset_size(fp16)");
  check(H5Tset_ebias(t.get(), 15), "H5Tset_ebias(fp16)");
  return t;
}
Hid bfloat16_type() {
  Hid t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  check(H5Tset_fields(t.get(), 15, 7, 8, 0, 7), "H5Tset_fields(bf16)");
  check(H5Tset_size(t.get(), 2), "H5Tset_size(bf16)");
  check(H5Tset_ebias(t.get(), 127), "H5Tset_ebias(bf16)");
  return t;
}

size_t element_size(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return 4;
    case StateDType::kFloat16:
    case StateDType::kBFloat16: return 2;
    case StateDType::kInt8: return 1;
  }
  return 4;
}

Hid state_type(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return Hid(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
    case StateDType::kFloat16: return half_type();
    case StateDType::kBFloat16: return bfloat16_type();
    case StateDType::kInt8: return Hid(H5Tcopy(H5T_STD_I8LE), H5Tclose);
  }
  throw std::logic_error("state_type");
}

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

// An extendible dataset of rows (rank 1 when cols is 0, else [rows, cols]) appended to at its end.
class Appender {
 public:
  Appender() = default;
  Appender(hid_t parent, const char* name, hid_t file_type, hid_t mem_type, hsize_t cols, hsize_t chunk_rows,
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

  void append(const void* data, hsize_t rows) {
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
  hsize_t size() const { return size_; }
  void close() { dataset_.reset(); }

 private:
  Hid dataset_;
  hid_t mem_type_ = -1;
  hsize_t cols_ = 0;
  hsize_t size_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Storage dtypes

// IEEE binary16 with round-to-nearest-even, subnormals, and overflow to infinity.
uint16_t float_to_half(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mantissa = x & 0x7fffffu;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xffu);
  if (exponent == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  const int32_t e = exponent - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);  // below half the smallest subnormal
    mantissa |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is still correct
  return static_cast<uint16_t>(sign | h);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  uint32_t x;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;  // 2^-24, exact
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31)  // infinity, or NaN made quiet as IEEE conversions (and F16C) do
    x = sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u);
  else
    x = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

uint16_t float_to_bfloat16(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float bfloat16_to_float(uint16_t b) {
  const uint32_t x = static_cast<uint32_t>(b) << 16;
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

// Bulk fp16 conversion. The scalar loops cost ~1.5 ns a value (data-dependent branches on random states,
// 450 us for a BERT-base window); F16C converts 8 values an instruction, with the same IEEE rounding.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DEFORMER_HAVE_F16C 1
__attribute__((target("avx,f16c"))) void halves_to_floats_f16c(const uint8_t* in, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i))));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = half_to_float(h);
  }
}
__attribute__((target("avx,f16c"))) void floats_to_halves_f16c(const float* in, int64_t n, uint8_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) {
    const uint16_t h = float_to_half(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}
bool have_f16c() {
  // CPUID leaf 1 rather than __builtin_cpu_supports("f16c"), which clang 14 (the fuzz build) does not know.
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
  }();
  return yes;
}
#else
bool have_f16c() { return false; }
#endif

void halves_to_floats(const uint8_t* in, int64_t n, float* out, bool allow_simd = true) {
#ifdef DEFORMER_HAVE_F16C
  if (allow_simd && have_f16c()) return halves_to_floats_f16c(in, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = half_to_float(h);
  }
}

void floats_to_halves(const float* in, int64_t n, uint8_t* out, bool allow_simd = true) {
#ifdef DEFORMER_HAVE_F16C
  if (allow_simd && have_f16c()) return floats_to_halves_f16c(in, n, out);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_half(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// Encodes rows x hidden floats into `bytes` (and per-row scales for int8).
void quantise(StateDType dtype, const float* in, int64_t rows, int64_t hidden, std::vector<uint8_t>& bytes,
              std::vector<float>& scales) {
  const int64_t n = rows * hidden;
  const size_t offset = bytes.size();
  bytes.resize(offset + n * element_size(dtype));
  uint8_t* out = bytes.data() + offset;
  switch (dtype) {
    case StateDType::kFloat32:
      std::memcpy(out, in, n * 4);
      break;
    case StateDType::kFloat16:
      floats_to_halves(in, n, out);
      break;
    case StateDType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = float_to_bfloat16(in[i]);
        std::memcpy(out + 2 * i, &b, 2);
      }
      break;
    case StateDType::kInt8:
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = in + r * hidden;
        float absmax = 0;
        for (int64_t c = 0; c < hidden; ++c) absmax = std::max(absmax, std::fabs(row[c]));
        const float scale = absmax / 127.0f;
        const float inverse = absmax > 0 ? 127.0f / absmax : 0.0f;
        auto* q = reinterpret_cast<int8_t*>(out + r * hidden);
        for (int64_t c = 0; c < hidden; ++c)
          q[c] = static_cast<int8_t>(std::clamp(std::nearbyint(row[c] * inverse), -127.0f, 127.0f));
        scales.push_back(scale);
      }
      break;
  }
}

void dequantise(StateDType dtype, const uint8_t* in, const float* scales, int64_t rows, int64_t hidden, float* out) {
  const int64_t n = rows * hidden;
  switch (dtype) {
    case StateDType::kFloat32:
      std::memcpy(out, in, n * 4);
      break;
    case StateDType::kFloat16:
      halves_to_floats(in, n, out);
      break;
    case StateDType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, in + 2 * i, 2);
        out[i] = bfloat16_to_float(b);
      }
      break;
    case StateDType::kInt8:
      for (int64_t r = 0; r < rows; ++r) {
        const auto* q = reinterpret_cast<const int8_t*>(in + r * hidden);
        for (int64_t c = 0; c < hidden; ++c) out[r * hidden + c] = static_cast<float>(q[c]) * scales[r];
      }
      break;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Metadata

void write_metadata(hid_t file, const CacheMetadata& m) {
  write_string_attribute(file, "format_name", m.format_name);
  write_int_attribute(file, "format_version", m.format_version);
  write_string_attribute(file, "model_hash", m.model_hash);
  write_string_attribute(file, "model_type", m.model_type);
  write_string_attribute(file, "joint_order", m.joint_order);
  write_int_attribute(file, "k", m.k);
  write_int_attribute(file, "hidden_size", m.hidden_size);
  write_int_attribute(file, "question_block", m.question_block);
  write_int_attribute(file, "document_block", m.document_block);
  write_int_attribute(file, "window_stride", m.window_stride);
  write_string_attribute(file, "state_dtype", to_string(m.state_dtype));
  write_string_attribute(file, "tokenizer_hash", m.tokenizer_hash);
  write_string_attribute(file, "library_version", m.library_version);
}

CacheMetadata read_metadata(hid_t file, const std::string& path) {
  CacheMetadata m;
  m.format_name = read_string_attribute(file, "format_name", path);
  m.format_version = static_cast<int>(read_int_attribute(file, "format_version", path));
  if (m.format_name != kFormatName)
    throw std::runtime_error("'" + path + "' is not a libdeformer cache (format '" + m.format_name + "')");
  if (m.format_version != kFormatVersion)
    throw std::runtime_error("'" + path + "' has cache format version " + std::to_string(m.format_version) +
                             "; this libdeformer " + version() + " reads version " + std::to_string(kFormatVersion));
  m.model_hash = read_string_attribute(file, "model_hash", path);
  m.model_type = read_string_attribute(file, "model_type", path);
  // Caches written before XLNet support have no joint_order: theirs follows from the model type.
  m.joint_order = has_attribute(file, "joint_order") ? read_string_attribute(file, "joint_order", path)
                  : m.model_type == "xlnet"         ? "document,question"
                                                    : "question,document";
  m.k = static_cast<int>(read_int_attribute(file, "k", path));
  m.hidden_size = static_cast<int>(read_int_attribute(file, "hidden_size", path));
  m.question_block = static_cast<int>(read_int_attribute(file, "question_block", path));
  m.document_block = static_cast<int>(read_int_attribute(file, "document_block", path));
  m.window_stride = static_cast<int>(read_int_attribute(file, "window_stride", path));
  try {
    m.state_dtype = parse_state_dtype(read_string_attribute(file, "state_dtype", path));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("'" + path + "': " + e.what());
  }
  m.tokenizer_hash = read_string_attribute(file, "tokenizer_hash", path);
  m.library_version = read_string_attribute(file, "library_version", path);
  return m;
}

void validate_metadata(const CacheMetadata& m) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("cache metadata: " + what); };
  if (m.format_name != kFormatName || m.format_version != kFormatVersion)
    bad("format must be " + std::string(kFormatName) + " version " + std::to_string(kFormatVersion));
  if (m.model_hash.empty()) bad("model_hash is empty");
  if (m.model_type.empty()) bad("model_type is empty");
  if (m.joint_order != "question,document" && m.joint_order != "document,question")
    bad("joint_order must be question,document or document,question, not '" + m.joint_order + "'");
  if (m.k < 0) bad("k=" + std::to_string(m.k) + " is negative");
  if (m.hidden_size <= 0) bad("hidden_size must be positive");
  if (m.question_block <= 0 || m.document_block <= 1) bad("block sizes must be positive");
  if (m.window_stride <= 0 || m.window_stride >= m.document_block - 1)
    bad("window_stride " + std::to_string(m.window_stride) + " must be in 1.." +
        std::to_string(m.document_block - 2) + " (below the window of document_block - 1 tokens)");
}

// Every field that decides whether states fit a model, with both values when they differ.
std::vector<std::string> differences(const CacheMetadata& have, const CacheMetadata& want, bool all_fields) {
  std::vector<std::string> out;
  auto cmp = [&](const char* field, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(std::string(field) + " is '" + a + "' in the cache, expected '" + b + "'");
  };
  auto num = [&](const char* field, int64_t a, int64_t b) { cmp(field, std::to_string(a), std::to_string(b)); };
  cmp("model hash", have.model_hash, want.model_hash);
  cmp("model type", have.model_type, want.model_type);
  cmp("joint order", have.joint_order, want.joint_order);
  num("k", have.k, want.k);
  num("hidden size", have.hidden_size, want.hidden_size);
  cmp("tokenizer hash", have.tokenizer_hash, want.tokenizer_hash);
  num("question block", have.question_block, want.question_block);
  num("document block", have.document_block, want.document_block);
  if (all_fields) {
    num("window stride", have.window_stride, want.window_stride);
    cmp("state dtype", to_string(have.state_dtype), to_string(want.state_dtype));
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : separator) + p;
  return out;
}

int64_t count_code_points(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xc0) != 0x80;
  return n;
}

// A cache (shard or index) must be a regular file: HDF5 and the index reader would wait forever on a FIFO, and
// read nothing useful from a device.
void require_cache_file(const std::string& path) {
  if (!fs::exists(path)) throw std::runtime_error("cache '" + path + "' does not exist");
  if (!fs::is_regular_file(path)) throw std::runtime_error("cache '" + path + "' is not a regular file");
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Public helpers

const char* to_string(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return "fp32";
    case StateDType::kFloat16: return "fp16";
    case StateDType::kBFloat16: return "bf16";
    case StateDType::kInt8: return "int8";
  }
  return "?";
}

StateDType parse_state_dtype(const std::string& text) {
  if (text == "fp32") return StateDType::kFloat32;
  if (text == "fp16") return StateDType::kFloat16;
  if (text == "bf16") return StateDType::kBFloat16;
  if (text == "int8") return StateDType::kInt8;
  throw std::invalid_argument("unknown state dtype '" + text + "' (expected fp32, fp16, bf16 or int8)");
}

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

int shard_of(const std::string& document_id, int num_shards) {
  if (num_shards <= 0) throw std::invalid_argument("num_shards must be positive, got " + std::to_string(num_shards));
  return static_cast<int>(fnv1a64(document_id) % static_cast<uint64_t>(num_shards));
}

namespace {
bool env_int(const char* name, int64_t& value) {
  const char* text = std::getenv(name);
  if (!text || !*text) return false;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(text, &end, 10);
  if (errno || *end) throw std::runtime_error(std::string(name) + "='" + text + "' is not an integer");
  value = parsed;
  return true;
}
}  // namespace

ShardSpec shard_from_environment() {
  int64_t id = 0, count = 0, minimum = 0, step = 1;
  const bool has_id = env_int("SLURM_ARRAY_TASK_ID", id);
  const bool has_count = env_int("SLURM_ARRAY_TASK_COUNT", count);
  if (!has_id && !has_count) return {};
  if (!has_id || !has_count)
    throw std::runtime_error("SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must be set together");
  env_int("SLURM_ARRAY_TASK_MIN", minimum);
  env_int("SLURM_ARRAY_TASK_STEP", step);
  if (step <= 0) throw std::runtime_error("SLURM_ARRAY_TASK_STEP=" + std::to_string(step) + " is not positive");
  const int64_t index = (id - minimum) / step;
  if (count <= 0 || index < 0 || index >= count || (id - minimum) % step)
    throw std::runtime_error("Slurm array task " + std::to_string(id) + " (min " + std::to_string(minimum) +
                             ", step " + std::to_string(step) + ") is not one of " + std::to_string(count) +
                             " shards");
  return {static_cast<int>(index), static_cast<int>(count)};
}

std::string shard_path(const std::string& path, const ShardSpec& shard) {
  if (shard.count <= 0 || shard.index < 0 || shard.index >= shard.count)
    throw std::invalid_argument("shard " + std::to_string(shard.index) + " of " + std::to_string(shard.count) +
                                " is out of range");
  const fs::path p(path);
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d", shard.index, shard.count);
  return (p.parent_path() / (p.stem().string() + suffix + p.extension().string())).string();
}

// -----------------------------------------------------------------------------------------------------------
// Checksums (the header's layout: /windows/checksum, /documents/checksum, "tables_checksum")

namespace {
// A window's stored rows, then its int8 scales.
uint64_t window_checksum(const uint8_t* values, size_t value_bytes, const float* scales, size_t num_scales) {
  const uint64_t sum = deformer::detail::checksum(values, value_bytes);
  return num_scales ? deformer::detail::checksum(scales, num_scales * sizeof(float), sum) : sum;
}

// The tables a reader reads whole at open, each digested in file order, then the seven digests together.
class TableDigests {
 public:
  void add(const std::string& id, const int64_t* id_span, const int64_t* text_span, const int64_t* token_span,
           const int64_t* window_span, const std::vector<int64_t>& window_tokens,
           const std::vector<int64_t>& window_rows) {
    digests_[0].update(id.data(), id.size());
    digests_[1].update(id_span, 16);
    digests_[2].update(text_span, 16);
    digests_[3].update(token_span, 16);
    digests_[4].update(window_span, 16);
    digests_[5].update(window_tokens.data(), window_tokens.size() * 8);
    digests_[6].update(window_rows.data(), window_rows.size() * 8);
  }
  uint64_t value() const { return combine({digests_[0].value(), digests_[1].value(), digests_[2].value(),
                                           digests_[3].value(), digests_[4].value(), digests_[5].value(),
                                           digests_[6].value()}); }
  static uint64_t combine(const std::array<uint64_t, 7>& digests) {
    return deformer::detail::checksum(digests.data(), sizeof(digests));
  }

 private:
  deformer::detail::Digest digests_[7];
};
}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Writer

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
    fs::remove(impl_->temporary, ignored);
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
  const int64_t code_points = count_code_points(text);
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

// -----------------------------------------------------------------------------------------------------------
// Reader

namespace {

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

Hid open_dataset(hid_t file, const char* name, const std::string& path, size_t cache_bytes = 0) {
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

Hid copy_type(hid_t type) { return Hid(check_id(H5Tcopy(type), "H5Tcopy"), H5Tclose); }

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
// HDF5 does not do POSIX I/O on it. Called under the lock.
FileDescriptor duplicate_descriptor(hid_t file) {
  Hid fapl(H5Fget_access_plist(file), H5Pclose);
  void* handle = nullptr;
  if (!fapl.valid() || H5Pget_driver(fapl.get()) != H5FD_SEC2 || H5Fget_vfd_handle(file, fapl.get(), &handle) < 0 ||
      !handle) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
  return FileDescriptor(::fcntl(*static_cast<int*>(handle), F_DUPFD_CLOEXEC, 0));
}

// Addresses of 8 bytes, counted from the file's first byte (no user block), as this library's writer makes them
// and the chunk index reader below expects. Under the lock.
bool plain_addresses(hid_t file) {
  Hid fcpl(H5Fget_create_plist(file), H5Pclose);
  size_t address = 0, length = 0;
  hsize_t user_block = 1;
  const bool plain = fcpl.valid() && H5Pget_sizes(fcpl.get(), &address, &length) >= 0 && address == 8 &&
                     length == 8 && H5Pget_userblock(fcpl.get(), &user_block) >= 0 && user_block == 0;
  H5Eclear2(H5E_DEFAULT);
  return plain;
}

// pread() of exactly `bytes`, across short reads and signals; false at the end of the file or on an error
// (errno then says which).
bool pread_all(int fd, void* out, size_t bytes, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = 0;
      return false;
    }
    p += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// The same for rows: a file that ends early was truncated after its chunk addresses were checked at open.
void read_fully(int fd, void* out, size_t bytes, uint64_t offset, const std::string& what) {
  if (pread_all(fd, out, bytes, offset)) return;
  const int error = errno;
  if (error) throw std::runtime_error(what + ": read failed: " + std::system_category().message(error));
  throw std::runtime_error(what + " ends early: the file was truncated after it was opened");
}

// ---------------------------------------------------------------------------------------------------------
// Chunk addresses. HDF5 1.10 has no call that lists them: H5Dget_chunk_info and H5Dget_chunk_info_by_coord
// each iterate over the chunk index from its start (an open of 240,000 chunks had not finished after 8 minutes;
// a million-window cache would take hours), and H5Dchunk_iter arrived in 1.14. So the index is read here, where
// it has the layout this library's writer produces (libver bounds earliest..v18): a version-1 object header
// whose version-3 data layout message names a version-1 B-tree (HDF5 File Format Specification: "Version 1
// B-trees", "Version 1 Data Object Header Prefix", "Data Layout Message", "Object Header Continuation
// Message"). Anything else is "not found", and reads go through H5Dread.

uint64_t little_endian(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// Bytes [offset, offset + bytes) of a file of `file_size` bytes; false past its end.
bool read_at(int fd, int64_t file_size, uint64_t offset, uint64_t bytes, std::vector<uint8_t>& out) {
  const auto size = static_cast<uint64_t>(file_size);
  if (offset > size || bytes > size - offset) return false;
  out.resize(bytes);
  return pread_all(fd, out.data(), bytes, offset);
}

// The B-tree root and dimensionality (rank + 1) of the chunked dataset whose object header is at `header`.
bool find_chunk_btree(int fd, int64_t file_size, uint64_t header, uint64_t& root, int& dimensionality) {
  std::vector<uint8_t> block;
  // Prefix: version 1, reserved, message count (2), reference count (4), size of the first block (4), padding to 16.
  if (!read_at(fd, file_size, header, 16, block) || block[0] != 1) return false;
  const uint64_t messages = little_endian(&block[2], 2);
  std::vector<std::pair<uint64_t, uint64_t>> blocks{{header + 16, little_endian(&block[8], 4)}};
  uint64_t seen = 0;
  // A handful of continuation blocks at most in a real header; the bound also ends a cycle of them.
  for (size_t b = 0; b < blocks.size() && b < 64; ++b) {
    if (blocks[b].second > (1u << 20) || !read_at(fd, file_size, blocks[b].first, blocks[b].second, block))
      return false;
    // Messages: type (2), data size (2), flags (1), reserved (3), data.
    for (size_t p = 0; p + 8 <= block.size() && seen < messages; ++seen) {
      const uint64_t type = little_endian(&block[p], 2), size = little_endian(&block[p + 2], 2);
      if (size > block.size() - p - 8) return false;
      const uint8_t* data = &block[p + 8];
      if (type == 0x10 && size >= 16) blocks.emplace_back(little_endian(data, 8), little_endian(data + 8, 8));
      if (type == 0x08) {  // layout: version, class (2: chunked), dimensionality, B-tree address, chunk sizes
        const bool shared = block[p + 4] & 0x02;  // then the data is a reference to the message, not the message
        if (shared || size < 11 || data[0] != 3 || data[1] != 2) return false;
        dimensionality = data[2];
        root = little_endian(data + 3, 8);
        return true;
      }
      p += 8 + size;
    }
  }
  return false;
}

// Fills address[c] for every chunk c of `chunk_rows` rows and `chunk_bytes` bytes from the leaves of the B-tree:
// false unless every chunk is there exactly once, unfiltered and of its full size, and the tree is well formed.
bool walk_chunk_btree(int fd, int64_t file_size, uint64_t root, int dimensionality, uint64_t chunk_rows,
                      uint64_t chunk_bytes, std::vector<uint64_t>& address) {
  constexpr uint64_t kMissing = ~uint64_t(0);
  std::fill(address.begin(), address.end(), kMissing);
  // Key: chunk bytes (4), filter mask (4), offset of the chunk in each dimension (8 each, the last always 0).
  const uint64_t key = 8 + 8 * static_cast<uint64_t>(dimensionality);
  std::vector<std::pair<uint64_t, int>> pending{{root, -1}};  // node, its level (-1: the root's, unknown)
  std::vector<uint8_t> node;
  size_t found = 0, visited = 0;
  while (!pending.empty()) {
    const auto [at, expected_level] = pending.back();
    pending.pop_back();
    if (++visited > 2 * address.size() + 64) return false;  // more nodes than chunks: not a tree
    // Node: "TREE", type (1: raw data chunks), level, entries (2), left and right siblings, then keys and children.
    if (!read_at(fd, file_size, at, 24, node) || std::memcmp(node.data(), "TREE", 4) != 0 || node[4] != 1) return false;
    const int level = node[5];
    const uint64_t entries = little_endian(&node[6], 2);
    if ((expected_level >= 0 && level != expected_level) || entries == 0) return false;
    if (!read_at(fd, file_size, at + 24, entries * (key + 8) + key, node)) return false;
    for (uint64_t e = 0; e < entries; ++e) {
      const uint8_t* entry = &node[e * (key + 8)];
      const uint64_t child = little_endian(entry + key, 8);
      if (level > 0) {
        pending.emplace_back(child, level - 1);
        continue;
      }
      const uint64_t first_row = little_endian(entry + 8, 8);
      for (int d = 1; d < dimensionality; ++d)
        if (little_endian(entry + 8 + 8 * d, 8) != 0) return false;  // rows are whole within chunks
      const uint64_t c = first_row / chunk_rows;
      if (little_endian(entry, 4) != chunk_bytes || little_endian(entry + 4, 4) != 0 || first_row % chunk_rows ||
          c >= address.size() || address[c] != kMissing)
        return false;
      address[c] = child;
      ++found;
    }
  }
  return found == address.size();
}

// Whole rows of a rank-1 or rank-2 dataset, as `memory_type`. Where HDF5 would only copy bytes (chunked, no
// filters, rows whole within chunks, every chunk allocated, stored bit for bit as `memory_type`), rows come
// from pread() on the shard's descriptor at chunk addresses located once at open: no HDF5 call and no lock,
// so threads read in parallel, straight into the caller's buffer. Anything else (gzip, a layout, type or byte
// order this library's writer does not produce) goes through H5Dread under the lock.
class RowReader {
 public:
  RowReader() = default;
  // `stored_type` is the type this library's writer stores; `fd` < 0 disables direct reads. Under the lock.
  RowReader(Hid dataset, Hid memory_type, hid_t stored_type, int fd, int64_t file_size, std::string what)
      : dataset_(std::move(dataset)), memory_type_(std::move(memory_type)), fd_(fd), what_(std::move(what)) {
    Hid space(check_id(H5Dget_space(dataset_.get()), what_), H5Sclose);
    rank_ = H5Sget_simple_extent_ndims(space.get());
    if (rank_ != 1 && rank_ != 2)
      throw std::runtime_error(what_ + " has rank " + std::to_string(rank_) + ", not 1 or 2");
    hsize_t dims[2] = {0, 1};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    rows_ = static_cast<int64_t>(dims[0]);
    cols_ = dims[1];
    row_bytes_ = H5Tget_size(memory_type_.get()) * cols_;
    Hid file_type(check_id(H5Dget_type(dataset_.get()), what_), H5Tclose);
    direct_ = fd_ >= 0 && H5Tequal(file_type.get(), stored_type) > 0 &&
              H5Tequal(memory_type_.get(), stored_type) > 0 && locate_chunks(file_size);
  }

  bool valid() const { return dataset_.valid(); }  // false for an optional dataset the file lacks
  int64_t rows() const { return rows_; }
  int64_t cols() const { return static_cast<int64_t>(cols_); }
  bool direct() const { return direct_; }

  void read(int64_t first, int64_t count, void* out) const {
    if (count <= 0) return;
    if (first < 0 || count > rows_ - first)  // the tables were checked at open: a bug, not a bad file
      throw std::logic_error(what_ + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                             ") are outside its " + std::to_string(rows_) + " rows");
    if (direct_) {
      // A range straddling chunks is one pread per chunk; chunks of one dataset need not be adjacent in the file.
      auto* p = static_cast<uint8_t*>(out);
      while (count > 0) {
        const int64_t chunk = first / chunk_rows_, row = first % chunk_rows_;
        const int64_t n = std::min(count, chunk_rows_ - row);
        read_fully(fd_, p, n * row_bytes_, chunk_address_[chunk] + row * row_bytes_, what_);
        p += n * row_bytes_;
        first += n;
        count -= n;
      }
      return;
    }
    Lock lock(h5_mutex());
    Hid space(check_id(H5Dget_space(dataset_.get()), what_), H5Sclose);
    hsize_t start[2] = {static_cast<hsize_t>(first), 0}, size[2] = {static_cast<hsize_t>(count), cols_};
    check(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, size, nullptr), "select");
    Hid memory(check_id(H5Screate_simple(rank_, size, nullptr), "H5Screate_simple"), H5Sclose);
    check(H5Dread(dataset_.get(), memory_type_.get(), memory.get(), space.get(), H5P_DEFAULT, out),
          what_ + ": cannot read rows [" + std::to_string(first) + ", " + std::to_string(first + count) + ")");
  }

 private:
  // The file address of every chunk, or false where a chunk is not a plain copy of its rows or the chunk index is
  // not one read above. A chunk past the end of the file is refused: the file was cut short. Under the lock.
  bool locate_chunks(int64_t file_size) {
    Hid dcpl(check_id(H5Dget_create_plist(dataset_.get()), what_), H5Pclose);
    hsize_t chunk[2] = {0, 0};
    if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) != 0 ||
        H5Pget_chunk(dcpl.get(), 2, chunk) != rank_ || chunk[0] == 0 || (rank_ == 2 && chunk[1] != cols_))
      return false;
    const uint64_t chunk_bytes = chunk[0] * row_bytes_;
    std::vector<uint64_t> address((rows_ + chunk[0] - 1) / chunk[0]);
    if (!address.empty()) {
#if H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10  // from 1.12 on, objects have tokens, not addresses
      H5O_info_t info{};
      uint64_t root = 0;
      int dimensionality = 0;
      if (H5Oget_info2(dataset_.get(), &info, H5O_INFO_BASIC) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
      if (!find_chunk_btree(fd_, file_size, info.addr, root, dimensionality) || dimensionality != rank_ + 1 ||
          !walk_chunk_btree(fd_, file_size, root, dimensionality, chunk[0], chunk_bytes, address))
        return false;
#else
      return false;
#endif
      // HDF5's own answer for the first, middle and last chunk: a tree misread here shows as a mismatch.
      for (size_t c : {size_t(0), address.size() / 2, address.size() - 1}) {
        const hsize_t offset[2] = {c * chunk[0], 0};
        unsigned filter_mask = 0;
        haddr_t where = HADDR_UNDEF;
        hsize_t bytes = 0;
        if (H5Dget_chunk_info_by_coord(dataset_.get(), offset, &filter_mask, &where, &bytes) < 0) {
          H5Eclear2(H5E_DEFAULT);
          return false;
        }
        if (where != address[c] || bytes != chunk_bytes || filter_mask != 0) return false;
      }
    }
    const auto size = static_cast<uint64_t>(file_size);
    for (size_t c = 0; c < address.size(); ++c)
      if (address[c] > size || chunk_bytes > size - address[c])
        throw std::runtime_error(what_ + ": chunk " + std::to_string(c) + " lies at bytes [" +
                                 std::to_string(address[c]) + ", " + std::to_string(address[c] + chunk_bytes) +
                                 "), past the end of the file (" + std::to_string(file_size) +
                                 " bytes): the file is truncated or damaged");
    chunk_rows_ = static_cast<int64_t>(chunk[0]);
    chunk_address_ = std::move(address);
    return true;
  }

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

// True when none of the n values at `data` (fp32, or 16-bit as stored) is an infinity or a NaN.
// A float is non-finite when its exponent bits are all ones; tested on the bits, without an early exit, so that
// the loop vectorizes (std::isfinite with a branch cost about 0.8 ns a value).
bool all_finite(const uint8_t* data, int64_t n, StateDType dtype) {
  bool bad = false;
  if (dtype == StateDType::kFloat32) {
    const uint32_t exponent = 0x7f800000u;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, data + 4 * i, 4);
      bad |= (bits & exponent) == exponent;
    }
    return !bad;
  }
  const uint16_t exponent = dtype == StateDType::kFloat16 ? 0x7c00 : 0x7f80;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, data + 2 * i, 2);
    bad |= (bits & exponent) == exponent;
  }
  return !bad;
}

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

void CacheReader::Impl::add_shard(const std::string& path) {
  Lock lock(h5_mutex());
  silence_hdf5();
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

  const int fd = options.direct_reads && plain_addresses(file) ? shard.fd.get() : -1;
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
  const int64_t text_size = shard.text_bytes.rows();
  const int64_t num_tokens = shard.char_offsets.rows();

  auto id_bytes_set = open_dataset(file, "/documents/id_bytes", path);
  std::string id_bytes(dataset_rows(id_bytes_set.get()), '\0');
  if (!id_bytes.empty())
    check(H5Dread(id_bytes_set.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, id_bytes.data()),
          "'" + path + "': cannot read document ids");
  const auto id_span = read_table(file, "/documents/id_span", 2, path);
  const auto text_span = read_table(file, "/documents/text_span", 2, path);
  const auto token_span = read_table(file, "/documents/token_span", 2, path);
  const auto window_span = read_table(file, "/documents/window_span", 2, path);
  const auto window_tokens = read_table(file, "/windows/token_span", 2, path);
  const auto row_span = read_table(file, "/windows/row_span", 2, path);
  const int64_t num_documents = id_span.size() / 2, num_windows = window_tokens.size() / 2;
  auto corrupt = [&](const std::string& what) {
    throw std::runtime_error("cache '" + path + "' is inconsistent: " + what);
  };
  if (text_span.size() / 2 != static_cast<size_t>(num_documents) ||
      token_span.size() / 2 != static_cast<size_t>(num_documents) ||
      window_span.size() / 2 != static_cast<size_t>(num_documents) || row_span.size() / 2 != static_cast<size_t>(num_windows))
    corrupt("table lengths differ");
  if (read_int_attribute(file, "num_documents", path) != num_documents ||
      read_int_attribute(file, "num_windows", path) != num_windows ||
      read_int_attribute(file, "num_rows", path) != shard.num_rows)
    corrupt("counts differ from the tables");

  // Checksums: in every file this version writes. A file written before them is read unverified.
  shard.checksummed = H5Lexists(file, "/windows/checksum", H5P_DEFAULT) > 0;
  std::vector<int64_t> window_sums, document_sums;
  if (shard.checksummed) {
    if (!has_attribute(file, "tables_checksum")) corrupt("it has window checksums but no tables checksum");
    window_sums = read_table(file, "/windows/checksum", 0, path);
    document_sums = read_table(file, "/documents/checksum", 3, path);
    if (window_sums.size() != static_cast<size_t>(num_windows) || document_sums.size() / 3 != static_cast<size_t>(num_documents))
      corrupt("checksum tables differ in length from the tables");
    auto digest = [](const void* data, size_t bytes) { return deformer::detail::checksum(data, bytes); };
    if (options.verify_checksums &&
        TableDigests::combine({digest(id_bytes.data(), id_bytes.size()), digest(id_span.data(), id_span.size() * 8),
                               digest(text_span.data(), text_span.size() * 8),
                               digest(token_span.data(), token_span.size() * 8),
                               digest(window_span.data(), window_span.size() * 8),
                               digest(window_tokens.data(), window_tokens.size() * 8),
                               digest(row_span.data(), row_span.size() * 8)}) !=
            static_cast<uint64_t>(read_int_attribute(file, "tables_checksum", path)))
      throw std::runtime_error("cache '" + path + "' is damaged: its document and window tables do not match their "
                               "checksum");
  }
  const int shard_index = static_cast<int>(shards.size());
  const int64_t window_base = static_cast<int64_t>(windows.size());
  auto in_range = [](int64_t begin, int64_t end, int64_t size) { return 0 <= begin && begin <= end && end <= size; };
  for (int64_t d = 0; d < num_documents; ++d) {
    const int64_t* is = &id_span[2 * d];
    const int64_t* ts = &text_span[2 * d];
    const int64_t* ks = &token_span[2 * d];
    const int64_t* ws = &window_span[2 * d];
    if (!in_range(is[0], is[1], id_bytes.size()) || !in_range(ts[0], ts[1], text_size) ||
        !in_range(ks[0], ks[1], num_tokens) || !in_range(ws[0], ws[1], num_windows))
      corrupt("document " + std::to_string(d) + " points outside the tables");
    DocumentInfo info;
    info.id = id_bytes.substr(is[0], is[1] - is[0]);
    info.first_window = window_base + ws[0];
    info.num_windows = ws[1] - ws[0];
    info.num_tokens = ks[1] - ks[0];
    if (!by_id.emplace(info.id, static_cast<int64_t>(documents.size())).second)
      throw std::runtime_error("document id '" + info.id + "' appears twice (again in '" + path + "')");
    for (int64_t w = ws[0]; w < ws[1]; ++w) {
      const int64_t* tok = &window_tokens[2 * w];
      const int64_t* row = &row_span[2 * w];
      if (!in_range(tok[0], tok[1], info.num_tokens) || row[1] < 1 || row[1] > m.document_block ||
          !in_range(row[0], row[0] + row[1], shard.num_rows))
        corrupt("window " + std::to_string(w) + " points outside the tables");
    }
    document_shard.push_back(shard_index);
    document_spans.push_back({ts[0], ts[1], ks[0], ks[1]});
    if (shard.checksummed)
      stored_document_checksum.push_back({static_cast<uint64_t>(document_sums[3 * d]),
                                   static_cast<uint64_t>(document_sums[3 * d + 1]),
                                   static_cast<uint64_t>(document_sums[3 * d + 2])});
    else
      stored_document_checksum.push_back({0, 0, 0});
    documents.push_back(std::move(info));
  }
  for (int64_t w = 0; w < num_windows; ++w) {
    WindowInfo info;
    info.document = -1;
    info.tokens = {window_tokens[2 * w], window_tokens[2 * w + 1]};
    info.rows = row_span[2 * w + 1];
    windows.push_back(info);
    window_first_row.push_back(row_span[2 * w]);
    stored_window_checksum.push_back(shard.checksummed ? static_cast<uint64_t>(window_sums[w]) : 0);
  }
  for (int64_t d = documents.size() - num_documents; d < static_cast<int64_t>(documents.size()); ++d)
    for (int64_t w = 0; w < documents[d].num_windows; ++w) windows[documents[d].first_window + w].document = d;
  for (int64_t w = window_base; w < static_cast<int64_t>(windows.size()); ++w)
    if (windows[w].document < 0) corrupt("window " + std::to_string(w - window_base) + " belongs to no document");
  shards.push_back(std::move(shard));
}

CacheReader::CacheReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheReader::~CacheReader() = default;

namespace {
bool looks_like_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c))
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{';
  return false;
}

std::vector<std::string> read_index(const std::string& path) {
  nlohmann::json index;
  try {
    std::ifstream in(path);
    index = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("'" + path + "' is neither an HDF5 file nor a readable cache index: " + e.what());
  }
  if (!index.is_object() || index.value("format", "") != kIndexFormatName)
    throw std::runtime_error("'" + path + "' is not an HDF5 file (nor a libdeformer cache index)");
  if (index.value("version", 0) != 1)
    throw std::runtime_error("'" + path + "' has cache index version " + index.value("version", nlohmann::json()).dump() +
                             "; this libdeformer reads version 1");
  std::vector<std::string> shards;
  const fs::path directory = fs::path(path).parent_path();
  for (const auto& entry : index.at("shards")) {
    const fs::path shard(entry.get<std::string>());
    shards.push_back((shard.is_absolute() ? shard : directory / shard).string());
  }
  if (shards.empty()) throw std::runtime_error("cache index '" + path + "' lists no shards");
  return shards;
}
}  // namespace

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

// -----------------------------------------------------------------------------------------------------------
// Completion check and merge

bool is_complete(const std::string& path) {
  try {
    if (!fs::exists(path)) return false;
    if (looks_like_index(path)) {
      CacheReader::open(path);
      return true;
    }
    Lock lock(h5_mutex());
    silence_hdf5();
    const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
    H5Eclear2(H5E_DEFAULT);
    if (is_hdf5 <= 0) return false;
    Hid fapl = file_access();
    const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (id < 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    Hid file(id, H5Fclose);
    read_metadata(file.get(), path);
    return has_attribute(file.get(), "complete") && read_int_attribute(file.get(), "complete", path) == 1;
  } catch (const std::exception&) {
    return false;
  }
}

void remove_stale_temporaries(const std::string& path) { deformer::detail::remove_stale_temporaries(path); }

void merge_shards(const std::string& index_path, const std::vector<std::string>& shard_paths) {
  if (shard_paths.empty()) throw std::invalid_argument("merge_shards: no shard files");
  const fs::path directory = fs::absolute(index_path).parent_path();
  nlohmann::json index;
  index["format"] = kIndexFormatName;
  index["version"] = 1;
  index["library_version"] = version();
  index["shards"] = nlohmann::json::array();
  for (const auto& shard : shard_paths) {
    std::error_code error;
    if (fs::equivalent(index_path, shard, error))  // the rename would replace that shard's states by the index
      throw std::invalid_argument("merge_shards: the index path '" + index_path + "' is the shard '" + shard + "'");
    if (looks_like_index(shard)) throw std::invalid_argument("'" + shard + "' is an index, not a shard file");
    index["shards"].push_back(fs::absolute(shard).lexically_relative(directory).string());
  }
  deformer::detail::remove_stale_temporaries(index_path);
  const std::string temporary = deformer::detail::temporary_name(index_path);
  {
    std::ofstream out(temporary);
    out << index.dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write '" + temporary + "'");
  }
  try {
    CacheReader::open(temporary);  // every shard complete, consistent, and no id twice
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  std::error_code error;
  fs::rename(temporary, index_path, error);
  if (error) {
    fs::remove(temporary, error);
    throw std::runtime_error("cannot rename '" + temporary + "' to '" + index_path + "'");
  }
}

// The codecs for tests (cache_codec.h). Thin wrappers: the exported names cannot be inlined into the hot
// loops above under -fPIC (semantic interposition), which made bf16 reads 5x slower.
namespace detail {
uint16_t float_to_half(float value) { return cache::float_to_half(value); }
float half_to_float(uint16_t half) { return cache::half_to_float(half); }
uint16_t float_to_bfloat16(float value) { return cache::float_to_bfloat16(value); }
float bfloat16_to_float(uint16_t bfloat) { return cache::bfloat16_to_float(bfloat); }
void halves_to_floats(const uint8_t* in, int64_t n, float* out, bool allow_simd) {
  cache::halves_to_floats(in, n, out, allow_simd);
}
void floats_to_halves(const float* in, int64_t n, uint8_t* out, bool allow_simd) {
  cache::floats_to_halves(in, n, out, allow_simd);
}
bool have_f16c() { return cache::have_f16c(); }
}  // namespace detail

}  // namespace cache
}  // namespace deformer
