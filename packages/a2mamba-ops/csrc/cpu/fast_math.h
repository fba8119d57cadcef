// exp and softplus for float32 loops that -O3 can vectorise.
//
// glibc's expf/log1pf are calls the compiler cannot vectorise without
// -ffast-math, and in the scan they cost more than the recurrence itself. These
// are branch-free (selects only), accurate to about 2 ulp, and follow PyTorch's
// softplus exactly in form: linear above the threshold 20. float64 keeps the
// libm functions: it is the precision of reference checks, not of models.
#pragma once

#include "cpu/variant.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

// float -> int32 by truncation, for a float or lane-wise for a float vector (whose comparison
// has the int32 vector type of the same width).
inline int32_t to_int32(float v) { return static_cast<int32_t>(v); }
template <typename V>
inline auto to_int32(V v) -> decltype(v < v) {
  return __builtin_convertvector(v, decltype(v < v));
}

// exp(x) by range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-7 polynomial for exp(r)
// (Cephes' expf coefficients): returns exp(r) and sets n, for x already clamped to the caller's range.
// V is float or a vector of float (simd.h): the same lines serve loops the compiler vectorises and
// values already in registers.
template <typename V>
[[gnu::always_inline]] inline V exp_reduced(V clamped, V& n) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const V zero{};
  n = (clamped * kLog2e + kRound) - kRound;
  const V r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  V p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

constexpr float kExpMin = -86.5f;  // exp(kExpMin) = 2.6e-38; n >= -125 above it: 2^n is a normal float

// exp(x) for any x; 2^n is built in the exponent bits, as 2 * 2^(n-1) so that n = 128 (x up to
// ln(FLT_MAX)) still fits.
template <typename V>
inline V exp_approx(V x) {
  constexpr float kMax = 88.72f;  // exp(kMax) = 3.39e38
  const V zero{};
  // std::min/max's rules (a NaN stays NaN), written as selects so that they apply lane-wise too.
  const V raised = x < kExpMin ? zero + kExpMin : x;
  const V clamped = kMax < raised ? zero + kMax : raised;
  V n;
  const V p = exp_reduced(clamped, n);
  const V half_scale = std::bit_cast<V>((to_int32(n) + 126) << 23);
  const V result = (p * half_scale) * 2.0f;
  // Outside the clamp: 0 below (where expf is subnormal or 0), infinity above. Both tests are
  // evaluated unconditionally: GCC (with its default -ftrapping-math) vectorises selects, not branches.
  const V bounded = x > kMax ? zero + std::numeric_limits<float>::infinity() : result;
  return x < kExpMin ? zero : bounded;
}

// exp(x) for x <= 0, -infinity included: softmax's exp(logit - max). Nothing can overflow, and from
// kExpMin down the result is 0 (where expf is subnormal), so 2^n is built directly and only the lower
// clamp is kept: four fewer operations a vector than exp_approx, in the softmax's innermost loop.
// Always inlined: out of line, each call passes its vector through memory (seen: 6 % of the logits' time).
template <typename V>
[[gnu::always_inline]] inline V exp_nonpositive(V x) {
#if defined(__AVX512F__)
  typedef float SixteenFloats __attribute__((vector_size(64)));
  if constexpr (std::is_same_v<V, SixteenFloats>) {
    // One compare gives both selects as a mask, and vscalefps builds p * 2^n, zeroing the lanes below
    // kExpMin, in one instruction: three operations where the generic lines below take eight.
    // "Not less than" is true for NaN, which passes through as NaN.
    const __m512 v = std::bit_cast<__m512>(x);
    const __mmask16 kept = _mm512_cmp_ps_mask(v, _mm512_set1_ps(kExpMin), _CMP_NLT_UQ);
    V n;
    const V p = exp_reduced(std::bit_cast<V>(_mm512_mask_blend_ps(kept, _mm512_set1_ps(kExpMin), v)), n);
    return std::bit_cast<V>(
        _mm512_maskz_scalef_ps(kept, std::bit_cast<__m512>(p), std::bit_cast<__m512>(n)));
  }
#endif
  const V zero{};
  const V clamped = x < kExpMin ? zero + kExpMin : x;
  V n;
  const V result = exp_reduced(clamped, n) * std::bit_cast<V>((to_int32(n) + 127) << 23);
  return x < kExpMin ? zero : result;
}

// log1p(y) for y in [0, 1], as 2 atanh(y / (2 + y)): no cancellation for small y.
inline float log1p_unit(float y) {
  const float s = y / (2.0f + y);  // in [0, 1/3]
  const float s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  return 2.0f * s * (p * s2 + 1.0f);
}

template <typename T>
inline T exp_fast(T x) {
  return std::exp(x);
}
template <>
inline float exp_fast<float>(float x) {
  return exp_approx(x);
}

constexpr double kSoftplusThreshold = 20.0;  // torch.nn.functional.softplus's default

// softplus(z) and its derivative sigmoid(z), PyTorch's rule: z itself (slope 1) above the threshold.
template <typename T>
inline void softplus_with_slope(T z, T& value, T& slope) {
  const T e = std::exp(z);
  const bool linear = z > T(kSoftplusThreshold);
  value = linear ? z : std::log1p(e);
  slope = linear ? T(1) : e / (e + T(1));
}
template <>
inline void softplus_with_slope<float>(float z, float& value, float& slope) {
  // softplus(z) = max(z, 0) + log1p(exp(-|z|)), with exp(-|z|) in (0, 1].
  const float y = exp_approx(-std::fabs(z));
  const float smooth = std::max(z, 0.0f) + log1p_unit(y);
  const float inv = 1.0f / (1.0f + y);
  const float sigmoid = z >= 0.0f ? inv : y * inv;
  const bool linear = z > static_cast<float>(kSoftplusThreshold);
  value = linear ? z : smooth;
  slope = linear ? 1.0f : sigmoid;
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
