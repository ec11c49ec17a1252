#pragma once
// Private: the storage dtype codecs of src/cache.cpp, exposed so that tests can check the portable scalar
// code against the F16C path (which is the one this x86 machine runs) on every half and many floats.

#include <cstdint>

namespace deformer {
namespace cache {
namespace detail {

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
