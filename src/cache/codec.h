#pragma once
// Private: the storage dtype codecs of the cache (src/cache/codec.cpp). The scalar conversions are exposed so that
// tests can check the portable code against the F16C path (which this x86 machine runs) on every half and many
// floats.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "deformer/cache.h"

namespace deformer {
namespace cache {
namespace detail {

// Bytes of one stored value.
size_t element_size(StateDType dtype);
// Appends rows x hidden floats encoded as `dtype` to `bytes`, and for int8 one scale a row (absmax / 127) to `scales`.
void quantise(StateDType dtype, const float* in, int64_t rows, int64_t hidden, std::vector<uint8_t>& bytes,
              std::vector<float>& scales);
// The inverse: rows x hidden floats into `out` (`scales` is read for int8 only).
void dequantise(StateDType dtype, const uint8_t* in, const float* scales, int64_t rows, int64_t hidden, float* out);
// True when none of the n values at `data` (fp32, or 16-bit as stored) is an infinity or a NaN.
bool all_finite(const uint8_t* data, int64_t n, StateDType dtype);

// IEEE binary16, round-to-nearest-even, subnormals kept, overflow to infinity.
uint16_t float_to_half(float value);
float half_to_float(uint16_t half);
// Top half of binary32, round-to-nearest-even; NaN stays NaN.
uint16_t float_to_bfloat16(float value);
float bfloat16_to_float(uint16_t bfloat);
// n values to or from little-endian halves; F16C when allowed and present, else the scalar functions.
void halves_to_floats(const uint8_t* in, int64_t n, float* out, bool allow_simd = true);
void floats_to_halves(const float* in, int64_t n, uint8_t* out, bool allow_simd = true);
bool have_f16c();

}  // namespace detail
}  // namespace cache
}  // namespace deformer
