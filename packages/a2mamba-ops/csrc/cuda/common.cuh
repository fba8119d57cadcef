// Helpers shared by every CUDA translation unit of a2mamba-ops: math in the
// accumulation type, warp primitives, and the launch plumbing (device guard,
// current stream, launch check). Nothing here synchronises the host.
#pragma once

// The few ATen headers the kernels use, not <ATen/ATen.h>: every .cu file is parsed once per
// architecture, and the whole ATen API would dominate the build.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include <cstdint>

// A2MAMBA_EMULATE_CUDA: the kernels compiled by a host compiler against a
// thread-based emulation of the CUDA built-ins, to check their index logic on
// machines without a GPU. Only the kernels are built then, never the launchers.
#ifndef A2MAMBA_EMULATE_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#define A2MAMBA_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace a2mamba::cuda_detail {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// float for float/half/bfloat16 inputs, double for double.
template <typename T>
using acc_t = at::opmath_type<T>;

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float log1p_of(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_of(double x) { return log1p(x); }

// log1p(y) for y in [0, 1] as 2 atanh(s), s = y / (2 + y) <= 1/3: an odd series in s, branch-free and
// about 2 ulp (the CPU kernels use the same), where log1pf runs a longer path with branches.
__device__ __forceinline__ float log1p_unit(float y) {
  const float s = __fdividef(y, 2.0f + y);
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

// PyTorch's softplus (beta 1, threshold 20).
template <typename S>
__device__ __forceinline__ S softplus(S x) {
  return x > S(20) ? x : log1p_of(exp_of(x));
}
// float: max(x, 0) + log1p(exp(-|x|)), whose exp never overflows and whose log1p argument lies in (0, 1].
template <>
__device__ __forceinline__ float softplus<float>(float x) {
  const float smooth = fmaxf(x, 0.0f) + log1p_unit(exp_of(-fabsf(x)));
  return x > 20.0f ? x : smooth;
}

// softplus(x) and its slope sigmoid(x) (1 above the threshold, as PyTorch's backward has it).
// The float version shares one e = exp(-|x|) between them: sigmoid(x) is 1 / (1 + e) for x >= 0 and
// e / (1 + e) below, which also keeps its relative accuracy where sigmoid is tiny. It divides with
// __fdividef (about 2 ulp): an IEEE division branches to a slow-path subroutine whose call needs a
// stack frame.
__device__ __forceinline__ void softplus_with_slope(float x, float& value, float& slope) {
  const float e = exp_of(-fabsf(x));
  const float r = __fdividef(1.0f, 1.0f + e);
  value = x > 20.0f ? x : fmaxf(x, 0.0f) + log1p_unit(e);
  slope = x > 20.0f ? 1.0f : (x >= 0.0f ? r : e * r);
}
__device__ __forceinline__ void softplus_with_slope(double x, double& value, double& slope) {
  value = softplus(x);
  slope = x > 20.0 ? 1.0 : 1.0 / (1.0 + exp_of(-x));
}

template <typename S>
__device__ __forceinline__ S warp_sum(S v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// 16 bytes of T, for single 16-byte loads and stores (at 16-byte aligned addresses only).
template <typename T>
struct alignas(16) Pack16 {
  T v[16 / sizeof(T)];
};

// One 16-byte global access. A misaligned address faults on a GPU; the emulation stops with a message
// instead (where a CPU would quietly read it).
template <typename T>
__device__ __forceinline__ Pack16<T> load_pack(const T* p) {
#ifdef A2MAMBA_EMULATE_CUDA
  emu::require_aligned(p, "16-byte load");
#endif
  return *reinterpret_cast<const Pack16<T>*>(p);
}
template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack16<T>& pack) {
#ifdef A2MAMBA_EMULATE_CUDA
  emu::require_aligned(p, "16-byte store");
#endif
  *reinterpret_cast<Pack16<T>*>(p) = pack;
}

template <typename T>
__device__ __forceinline__ acc_t<T> load_acc(const T* p) {
  return static_cast<acc_t<T>>(*p);
}

#ifndef A2MAMBA_EMULATE_CUDA
// Largest dynamic shared memory a block may opt into on the current device.
inline int64_t max_dynamic_smem(int device) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

// Lets `kernel` use `bytes` of dynamic shared memory (above the 48 KiB default).
// A function attribute, not a stream operation: legal during graph capture.
template <typename Kernel>
inline void allow_dynamic_smem(Kernel kernel, int64_t bytes, int device, const char* what) {
  const int64_t limit = max_dynamic_smem(device);
  TORCH_CHECK(bytes <= limit, what, ": needs ", bytes, " bytes of shared memory per block, the device allows ", limit,
              " (reduce the kernel size or head dim)");
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

#endif  // A2MAMBA_EMULATE_CUDA

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace a2mamba::cuda_detail
