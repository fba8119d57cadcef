// Fixed-width vectors for the CPU kernels, as GCC/Clang vector extensions: the
// same source becomes SSE2, AVX2 or AVX-512 code in each variant's object
// (see capability.h), with no intrinsics to keep per instruction set.
#pragma once

#include "cpu/variant.h"

#include <cstring>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <typename T>
struct SimdTraits;
template <>
struct SimdTraits<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct SimdTraits<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
};

template <typename T>
using Vec = typename SimdTraits<T>::type;
template <typename T>
constexpr int kLanes = kVectorBytes / sizeof(T);

// Narrower vectors of the same elements (half and quarter of a full one): a channel row that is not
// a whole number of full vectors (A2Mamba's head dims 24 and 28 at 16 float lanes) is held as full
// vectors plus at most one half and one quarter vector, all in registers.
template <typename T, int kBytes>
struct NarrowSimd {
  typedef T type __attribute__((vector_size(kBytes)));
};
template <typename T, int kBytes>
using VecOfBytes = typename NarrowSimd<T, kBytes>::type;

// Unaligned load and store (memcpy of a vector's size compiles to one move).
template <typename T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename V, typename T>
inline V load_as(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T, typename V>
inline void store_from(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
