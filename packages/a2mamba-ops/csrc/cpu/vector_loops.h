// Inner loops over a contiguous channel axis, written so that -O3 vectorises
// them without -ffast-math: the dot product and the sum keep eight independent partial
// sums (a reduction the compiler may not reassociate on its own), the axpy has
// no reduction at all.
#pragma once

#include "cpu/variant.h"

#include <cstdint>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  constexpr int kLanes = 8;
  T partial[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      partial[l] += a[c + l] * b[c + l];
    }
  }
  T tail = 0;
  for (; c < n; ++c) {
    tail += a[c] * b[c];
  }
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7])) + tail;
}

template <typename T>
inline T sum(const T* __restrict a, int64_t n) {
  constexpr int kLanes = 8;
  T partial[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      partial[l] += a[c + l];
    }
  }
  T tail = 0;
  for (; c < n; ++c) {
    tail += a[c];
  }
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
         ((partial[2] + partial[6]) + (partial[3] + partial[7])) + tail;
}

// y += alpha * x
template <typename T>
inline void axpy(T alpha, const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    y[c] += alpha * x[c];
  }
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
