// Fixed-width vectors for the CPU kernels, as GCC/Clang vector extensions: the
// same source becomes SSE2, AVX2 or AVX-512 code in each variant's object
// (see capability.h), with no intrinsics to keep per instruction set.
#pragma once

#include "cpu/variant.h"

#include <cstring>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kVectorRegisters = 32;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kVectorRegisters = 16;
#else
constexpr int kVectorBytes = 16;
constexpr int kVectorRegisters = 16;
#endif

// A vector of kBytes of T (kVectorBytes: a full one of the variant; half and quarter ones hold the rest
// of a channel row that is not a whole number of full vectors, as A2Mamba's head dims 24 and 28 at
// 16 float lanes, in registers too).
template <typename T, int kBytes>
struct SimdOfBytes {
  typedef T type __attribute__((vector_size(kBytes)));
};
template <typename T, int kBytes>
using VecOfBytes = typename SimdOfBytes<T, kBytes>::type;

template <typename T>
using Vec = VecOfBytes<T, kVectorBytes>;
template <typename T>
constexpr int kLanes = kVectorBytes / sizeof(T);

// Unaligned loads and stores of any of these vectors (memcpy of a vector's size compiles to one move).
template <typename V, typename T>
inline V load_as(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline Vec<T> load(const T* p) {
  return load_as<Vec<T>>(p);
}
template <typename T, typename V>
inline void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
