// Shared pieces of the selective-scan kernels.
//
// Work split: one warp walks one (batch, channel, state) row along L in rounds
// of kScanFwdChunk steps, kScanItems consecutive steps per lane (so loads and
// stores move 16-byte packs). The recurrence h_t = a_t h_{t-1} + x_t is an
// associative composition of affine maps: each lane composes its steps in
// registers, one 5-step shuffle scan per round combines the lanes, and only
// the state after the round's last step is carried to the next round. Every
// round but a row's last lies inside L and runs without bounds checks.
#pragma once

#include "common.cuh"

namespace a2mamba::cuda_detail {

constexpr int kScanItems = 8;     // forward: consecutive steps per lane
constexpr int kScanFwdRows = 4;   // forward: rows (warps) per block
constexpr int kScanFwdChunk = kWarpSize * kScanItems;
constexpr int kScanWarps = 8;     // backward: rows (warps) per block

template <typename T>
struct ScanArgs {
  const T* u;          // (batch, D, L)
  const T* delta;      // (batch, D, L)
  const acc_t<T>* A;   // (D, N)
  const T* B;          // (batch, G, N, L)
  const acc_t<T>* bias;  // (D,) or nullptr
  bool softplus;
  bool packed;         // L and every pointer allow 16-byte packs (see load_items)
  int64_t rows;        // batch * D
  int D, N, L;
  int channels_per_group;  // D / G: row r reads B group row / channels_per_group
  // Forward only: L is walked in `segments` pieces of segment_len steps (whole rounds), each by
  // its own warp, when there are too few rows to fill the GPU (scan_fwd_segments).
  int segments = 1;
  int segment_len = 0;
};

// Inclusive scan, in lane order, of the affine maps h -> a*h + x:
// afterwards (a, x) is the composition of the maps of lanes 0..lane.
template <typename S>
__device__ __forceinline__ void scan_affine_up(S& a, S& x, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset <<= 1) {
    const S a_prev = __shfl_up_sync(kFullMask, a, offset);
    const S x_prev = __shfl_up_sync(kFullMask, x, offset);
    if (lane >= offset) {
      x = a * x_prev + x;
      a = a * a_prev;
    }
  }
}

// The same in reverse lane order (lanes lane..31), for the adjoint recurrence
// g_t = dh_t + a_{t+1} g_{t+1}.
template <typename S>
__device__ __forceinline__ void scan_affine_down(S& a, S& x, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset <<= 1) {
    const S a_next = __shfl_down_sync(kFullMask, a, offset);
    const S x_next = __shfl_down_sync(kFullMask, x, offset);
    if (lane + offset < kWarpSize) {
      x = a * x_next + x;
      a = a * a_next;
    }
  }
}

// kScanItems consecutive values from p[t0...] as S. kPacked (rows start on 16-byte boundaries and L
// is a multiple of every pack): one 16-byte access per pack. kChecked: the round reaches past L (it
// is a row's last), where zeros are loaded and nothing is stored; every other round runs unchecked.
template <bool kPacked, bool kChecked, typename T, typename S>
__device__ __forceinline__ void load_items(const T* __restrict__ p, int t0, int L, S (&v)[kScanItems]) {
  constexpr int kPack = 16 / static_cast<int>(sizeof(T));
  static_assert(kScanItems % kPack == 0, "a lane's items are whole packs");
  if constexpr (kPacked) {
#pragma unroll
    for (int k = 0; k < kScanItems / kPack; ++k) {
      const int t = t0 + k * kPack;
      if (!kChecked || t + kPack <= L) {
        const Pack16<T> pack = load_pack(p + t);
#pragma unroll
        for (int j = 0; j < kPack; ++j) v[k * kPack + j] = static_cast<S>(pack.v[j]);
      } else {
#pragma unroll
        for (int j = 0; j < kPack; ++j) v[k * kPack + j] = S(0);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kScanItems; ++i) v[i] = !kChecked || t0 + i < L ? static_cast<S>(p[t0 + i]) : S(0);
  }
}

template <bool kPacked, bool kChecked, typename T, typename S>
__device__ __forceinline__ void store_items(T* __restrict__ p, int t0, int L, const S (&v)[kScanItems]) {
  constexpr int kPack = 16 / static_cast<int>(sizeof(T));
  static_assert(kScanItems % kPack == 0, "a lane's items are whole packs");
  if constexpr (kPacked) {
#pragma unroll
    for (int k = 0; k < kScanItems / kPack; ++k) {
      const int t = t0 + k * kPack;
      if (!kChecked || t + kPack <= L) {
        Pack16<T> pack;
#pragma unroll
        for (int j = 0; j < kPack; ++j) pack.v[j] = static_cast<T>(v[k * kPack + j]);
        store_pack(p + t, pack);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kScanItems; ++i)
      if (!kChecked || t0 + i < L) p[t0 + i] = static_cast<T>(v[i]);
  }
}

// Runs body.template operator()<kPacked, kSoftplus>() with the run-time flags as constants, so that
// each combination gets a hot loop without their branches.
template <class Body>
__device__ __forceinline__ void with_scan_flags(bool packed, bool softplus, Body&& body) {
  if (packed) {
    if (softplus) body.template operator()<true, true>();
    else body.template operator()<true, false>();
  } else {
    if (softplus) body.template operator()<false, true>();
    else body.template operator()<false, false>();
  }
}

// Deterministic dB: partial rows per group, one per block that holds rows of
// the group (runs start at the group's first row or at a block boundary).
inline int scan_dB_parts(int64_t channels_per_group) {
  return static_cast<int>((channels_per_group + 2 * kScanWarps - 2) / kScanWarps);
}

inline void check_scan_tensors(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                               const std::optional<at::Tensor>& delta_bias) {
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes(), "selective_scan_state (cuda): u and delta must be (batch, D, L)");
  TORCH_CHECK(B.dim() == 4 && B.size(0) == u.size(0) && B.size(2) == A.size(1) && B.size(3) == u.size(2),
              "selective_scan_state (cuda): B must be (batch, G, N, L)");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == u.size(1), "selective_scan_state (cuda): A must be (D, N)");
  TORCH_CHECK(B.size(1) > 0 && u.size(1) % B.size(1) == 0, "selective_scan_state (cuda): G must divide D");
  TORCH_CHECK(u.is_contiguous() && delta.is_contiguous() && A.is_contiguous() && B.is_contiguous(),
              "selective_scan_state (cuda): tensors must be contiguous");
  TORCH_CHECK(delta.scalar_type() == u.scalar_type() && B.scalar_type() == u.scalar_type(),
              "selective_scan_state (cuda): u, delta and B must share a dtype, got ", u.scalar_type(), ", ",
              delta.scalar_type(), ", ", B.scalar_type());
  const auto state = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(A.scalar_type() == state, "selective_scan_state (cuda): A must be ", state, ", got ", A.scalar_type());
  if (delta_bias.has_value() && delta_bias->defined()) {
    TORCH_CHECK(delta_bias->is_contiguous() && delta_bias->numel() == u.size(1) &&
                    delta_bias->scalar_type() == state,
                "selective_scan_state (cuda): delta_bias must be a contiguous (D,) ", state, " tensor");
  }
  TORCH_CHECK(u.size(2) < (int64_t{1} << 31) && u.size(0) * u.size(1) < (int64_t{1} << 31),
              "selective_scan_state (cuda): L and batch * D must fit in 31 bits");
}

// Whether t's data starts on a 16-byte boundary (a contiguous tensor with a storage offset may not).
inline bool starts_aligned(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0; }

template <typename T>
ScanArgs<T> make_scan_args(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                           const std::optional<at::Tensor>& delta_bias, bool delta_softplus) {
  using S = acc_t<T>;
  ScanArgs<T> args;
  args.u = u.const_data_ptr<T>();
  args.delta = delta.const_data_ptr<T>();
  args.A = A.const_data_ptr<S>();
  args.B = B.const_data_ptr<T>();
  args.bias = (delta_bias.has_value() && delta_bias->defined()) ? delta_bias->const_data_ptr<S>() : nullptr;
  args.softplus = delta_softplus;
  args.D = static_cast<int>(u.size(1));
  args.L = static_cast<int>(u.size(2));
  args.N = static_cast<int>(A.size(1));
  args.rows = u.size(0) * u.size(1);
  args.channels_per_group = static_cast<int>(u.size(1) / B.size(1));
  // 16-byte packs: every row (and h's rows) starts on a 16-byte boundary when L is a multiple of
  // 8 elements of the widest pack (2-byte inputs) or of 4 (4-byte inputs, float states), and
  // the allocations are aligned.
  const int64_t pack_elems = 16 / std::min<int64_t>(u.element_size(), sizeof(S));
  args.packed = args.L % pack_elems == 0 && starts_aligned(u) && starts_aligned(delta) && starts_aligned(B);
  return args;
}

}  // namespace a2mamba::cuda_detail
