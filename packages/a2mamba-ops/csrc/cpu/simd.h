// Fixed-width vectors for the CPU kernels, as GCC/Clang vector extensions: the
// same source becomes SSE2, AVX2 or AVX-512 code in each variant's object
// (see capability.h), with no intrinsics to keep per instruction set.
#pragma once

#include "cpu/variant.h"

#include <cstdint>
#include <cstring>
#include <utility>

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

// op over all lanes of v, the result in every lane: log2(lanes) steps, each combining every lane
// with the one whose index differs in one bit (a serial pass over the lanes is a chain of lanes-1
// dependent operations, and in a softmax of a few vectors it was the longest chain).
template <int kBit, typename V, size_t... E>
inline V lanes_exchanged(V v, std::index_sequence<E...>) {
  return __builtin_shufflevector(v, v, (static_cast<int>(E) ^ kBit)...);
}
template <typename V, typename Op, int kBit = static_cast<int>(sizeof(V) / sizeof(V{}[0])) / 2>
inline V across_lanes(V v, const Op& op) {
  constexpr size_t kWidth = sizeof(V) / sizeof(V{}[0]);
  v = op(v, lanes_exchanged<kBit>(v, std::make_index_sequence<kWidth>{}));
  if constexpr (kBit > 1) {
    return across_lanes<V, Op, kBit / 2>(v, op);
  } else {
    return v;
  }
}

// Ask for the cache lines of [p, p + bytes) ahead of their use: gathers (one query's channels here,
// the next one's pixels away) defeat the hardware prefetchers, and a kernel called right after a
// large matmul finds its operands evicted to memory.
inline void prefetch_lines(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t b = 0; b < bytes; b += 64) {
    __builtin_prefetch(c + b, 0, 3);
  }
}
// ... and lines about to be written: owned before the stores reach them.
inline void prefetch_lines_for_write(void* p, int64_t bytes) {
  char* c = static_cast<char*>(p);
  for (int64_t b = 0; b < bytes; b += 64) {
    __builtin_prefetch(c + b, 1, 3);
  }
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
