#include "cache/codec.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

namespace deformer {
namespace cache {
namespace detail {
// The conversions themselves, internal so that they inline into the loops below: the exported names (at the end)
// cannot be inlined under -fPIC (semantic interposition), which made bf16 reads 5x slower.
namespace local {
namespace {

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

}  // namespace
}  // namespace local

size_t element_size(StateDType dtype) {
  switch (dtype) {
    case StateDType::kFloat32: return 4;
    case StateDType::kFloat16:
    case StateDType::kBFloat16: return 2;
    case StateDType::kInt8: return 1;
  }
  return 4;
}

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
      local::floats_to_halves(in, n, out);
      break;
    case StateDType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = local::float_to_bfloat16(in[i]);
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
      local::halves_to_floats(in, n, out);
      break;
    case StateDType::kBFloat16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, in + 2 * i, 2);
        out[i] = local::bfloat16_to_float(b);
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

// For tests (codec.h).
uint16_t float_to_half(float value) { return local::float_to_half(value); }
float half_to_float(uint16_t half) { return local::half_to_float(half); }
uint16_t float_to_bfloat16(float value) { return local::float_to_bfloat16(value); }
float bfloat16_to_float(uint16_t bfloat) { return local::bfloat16_to_float(bfloat); }
void halves_to_floats(const uint8_t* in, int64_t n, float* out, bool allow_simd) {
  local::halves_to_floats(in, n, out, allow_simd);
}
void floats_to_halves(const float* in, int64_t n, uint8_t* out, bool allow_simd) {
  local::floats_to_halves(in, n, out, allow_simd);
}
bool have_f16c() { return local::have_f16c(); }

}  // namespace detail
}  // namespace cache
}  // namespace deformer
