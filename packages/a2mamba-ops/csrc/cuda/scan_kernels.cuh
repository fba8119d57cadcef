// The selective-scan kernels (forward and backward); their launch plans and
// buffers are in scan_launch.cuh, which also derives the backward and its dB
// reduction.
#pragma once

#include "scan_common.cuh"

namespace a2mamba::cuda_detail {

// What a stretch of forward steps does to the state: h_after = a * h_before + state (state: the
// state after it when it starts from 0).
template <typename S>
struct ScanStretch {
  S a;
  S state;
};

// Forward round: steps [base, base + kScanFwdChunk) of one (row, state). Each lane composes its
// steps' affine maps in registers, one shuffle scan combines the lanes' compositions, and each lane
// then replays its steps from the state before its first one (kStore: and stores them). Returns the
// state after the round (and, without kStore, the product of its a).
// Steps past L (kChecked: the row's last round) come after every real one, so they cannot change a
// stored state: only their loads and stores need guarding.
template <bool kPacked, bool kSoftplus, bool kChecked, bool kStore, typename T, typename S>
__device__ __forceinline__ ScanStretch<S> scan_fwd_round(const T* __restrict__ u, const T* __restrict__ delta,
                                                         const T* __restrict__ B, S* __restrict__ h_row, int base,
                                                         int L, int lane, S A, S bias, S carry) {
  const int t0 = base + lane * kScanItems;
  S u_v[kScanItems], a_v[kScanItems], x_v[kScanItems];
  load_items<kPacked, kChecked>(u, t0, L, u_v);
  load_items<kPacked, kChecked>(delta, t0, L, a_v);
  load_items<kPacked, kChecked>(B, t0, L, x_v);
  S a_run = S(1), x_run = S(0);  // composition of this lane's maps
#pragma unroll
  for (int i = 0; i < kScanItems; ++i) {
    S dt = a_v[i] + bias;
    if constexpr (kSoftplus) dt = softplus(dt);
    a_v[i] = exp_of(dt * A);
    x_v[i] = dt * x_v[i] * u_v[i];
    x_run = a_v[i] * x_run + x_v[i];
    a_run *= a_v[i];
  }
  scan_affine_up(a_run, x_run, lane);  // now lanes 0..lane
  ScanStretch<S> result{S(1), S(0)};
  if constexpr (kStore) {
    S a_before = __shfl_up_sync(kFullMask, a_run, 1);
    S x_before = __shfl_up_sync(kFullMask, x_run, 1);
    if (lane == 0) a_before = S(1), x_before = S(0);
    S state = a_before * carry + x_before;
#pragma unroll
    for (int i = 0; i < kScanItems; ++i) {
      state = a_v[i] * state + x_v[i];
      u_v[i] = state;
    }
    store_items<kPacked, kChecked>(h_row, t0, L, u_v);
  } else {
    result.a = __shfl_sync(kFullMask, a_run, kWarpSize - 1);
  }
  result.state = __shfl_sync(kFullMask, a_run * carry + x_run, kWarpSize - 1);
  return result;
}

// Steps [begin, end) of one (row, state) from `carry`, in rounds; begin is a multiple of
// kScanFwdChunk, and end is too unless it is L (then the last round is checked).
template <bool kPacked, bool kSoftplus, bool kStore, typename T, typename S>
__device__ __forceinline__ ScanStretch<S> scan_fwd_walk(const T* __restrict__ u, const T* __restrict__ delta,
                                                        const T* __restrict__ B, S* __restrict__ h_row, int begin,
                                                        int end, int L, int lane, S A, S bias, S carry) {
  S a = S(1);
  int base = begin;
#pragma unroll 1  // one round per iteration: a round is already 8 steps per lane
  for (; base + kScanFwdChunk <= end; base += kScanFwdChunk) {
    const auto round = scan_fwd_round<kPacked, kSoftplus, false, kStore>(u, delta, B, h_row, base, L, lane, A, bias, carry);
    carry = round.state;
    a *= round.a;
  }
  if (base < end) {
    const auto round = scan_fwd_round<kPacked, kSoftplus, true, kStore>(u, delta, B, h_row, base, L, lane, A, bias, carry);
    carry = round.state;
    a *= round.a;
  }
  return {a, carry};
}

// Which (row, segment) a forward warp walks, and what it reads.
template <typename T>
struct ScanFwdWarp {
  int64_t row;
  int segment, begin, end;  // steps [begin, end) of the row
  int d;
  int64_t group_row;  // b * G + g
  acc_t<T> bias;

  __device__ __forceinline__ static bool locate(const ScanArgs<T>& args, ScanFwdWarp& w) {
    // Blocks of kScanFwdRows rows of one segment: the segment (and the loop bounds) follow from the
    // block alone, which the compiler sees as uniform across each warp (it emits plain shuffles).
    w.segment = static_cast<int>(blockIdx.x % static_cast<unsigned>(args.segments));
    w.row = int64_t{blockIdx.x / static_cast<unsigned>(args.segments)} * kScanFwdRows + threadIdx.x / kWarpSize;
    if (w.row >= args.rows) return false;
    w.begin = w.segment * args.segment_len;
    w.end = w.segment + 1 == args.segments ? args.L : w.begin + args.segment_len;
    // 32-bit division (rows < 2^31): a 64-bit one is a subroutine call.
    w.d = static_cast<int>(static_cast<unsigned>(w.row) % static_cast<unsigned>(args.D));
    w.group_row = static_cast<unsigned>(w.row) / static_cast<unsigned>(args.channels_per_group);
    w.bias = args.bias != nullptr ? args.bias[w.d] : acc_t<T>(0);
    return true;
  }
};

// Forward, first pass when L is split into segments: what each segment but the last does to the
// state, summary[(row, state, segment)] = (a, state), for the segments after it.
template <typename T>
__global__ void __launch_bounds__(kScanFwdRows* kWarpSize)
    scan_fwd_summary_kernel(ScanArgs<T> args, acc_t<T>* __restrict__ summary) {
  using S = acc_t<T>;
  const int lane = threadIdx.x % kWarpSize;
  ScanFwdWarp<T> w;
  if (!ScanFwdWarp<T>::locate(args, w) || w.segment + 1 == args.segments) return;  // no block barriers here
  const int L = args.L;
  const T* __restrict__ u = args.u + w.row * L;
  const T* __restrict__ delta = args.delta + w.row * L;
  with_scan_flags(args.packed, args.softplus, [&]<bool kPacked, bool kSoftplus>() {
    for (int n = 0; n < args.N; ++n) {
      const S A = args.A[int64_t{w.d} * args.N + n];
      const T* __restrict__ B = args.B + (w.group_row * args.N + n) * L;
      const auto stretch = scan_fwd_walk<kPacked, kSoftplus, false>(u, delta, B, static_cast<S*>(nullptr), w.begin,
                                                                    w.end, L, lane, A, w.bias, S(0));
      if (lane == 0) {
        S* out = summary + ((w.row * args.N + n) * args.segments + w.segment) * 2;
        out[0] = stretch.a;
        out[1] = stretch.state;
      }
    }
  });
}

// Forward. A warp walks one row (or one segment of it) along L for each state in turn, in rounds
// (scan_fwd_round), from the state the segments before it leave (their summaries); the run-time
// flags become constants of four copies of the walk (with_scan_flags).
template <typename T>
__global__ void __launch_bounds__(kScanFwdRows* kWarpSize)
    scan_fwd_kernel(ScanArgs<T> args, acc_t<T>* __restrict__ h, const acc_t<T>* __restrict__ summary) {
  using S = acc_t<T>;
  const int lane = threadIdx.x % kWarpSize;
  ScanFwdWarp<T> w;
  if (!ScanFwdWarp<T>::locate(args, w)) return;  // no block-wide synchronisation in this kernel
  const int L = args.L;
  const T* __restrict__ u = args.u + w.row * L;
  const T* __restrict__ delta = args.delta + w.row * L;

  with_scan_flags(args.packed, args.softplus, [&]<bool kPacked, bool kSoftplus>() {
    for (int n = 0; n < args.N; ++n) {
      const S A = args.A[int64_t{w.d} * args.N + n];
      const T* __restrict__ B = args.B + (w.group_row * args.N + n) * L;
      S* __restrict__ h_row = h + (w.row * args.N + n) * L;
      S carry = S(0);
      const S* before = summary + (w.row * args.N + n) * args.segments * 2;
      for (int s = 0; s < w.segment; ++s) carry = before[2 * s] * carry + before[2 * s + 1];
      scan_fwd_walk<kPacked, kSoftplus, true>(u, delta, B, h_row, w.begin, w.end, L, lane, A, w.bias, carry);
    }
  });
}

template <typename T>
struct ScanBwdArgs {
  const acc_t<T>* dh;  // (batch, D, N, L)
  const acc_t<T>* h;   // (batch, D, N, L)
  T* du;               // (batch, D, L)
  T* ddelta;           // (batch, D, L)
  acc_t<T>* du_acc;    // (batch, D, L) when N > 1, else nullptr
  acc_t<T>* ddt_acc;   // (batch, D, L) when N > 1, else nullptr
  acc_t<T>* dA_rows;   // (batch, D, N)
  acc_t<T>* dbias_rows;  // (batch, D) or nullptr
  acc_t<T>* dB;        // atomic: (batch, G, N, L); deterministic: (batch, G, dB_parts, N, L)
  int dB_parts;        // deterministic: per-block partial sums per group (see scan_dB_parts)
  bool deterministic;
};

// What the backward's warps share for dB: each warp's terms of the round, and for the warp that
// starts a run of rows (warps) sharing one B group, where the run ends and which dB row it adds to.
template <typename S>
struct ScanBwdShared {
  alignas(16) S dB[kScanWarps][kScanFwdChunk];
  int run_end[kScanWarps];     // the warp after the run's last; 0 for a warp that starts no run
  int64_t dB_row[kScanWarps];  // the run's row of dB (atomic) or of its partials (deterministic), state 0
};

// Backward. A warp walks one (row, state) from the end of L, kScanItems consecutive steps per lane,
// in the forward's structure run in reverse: each lane composes its steps' adjoint maps
// g -> a_{t+1} g + dh_t, one reverse shuffle scan per round combines the lanes, and each lane replays
// its steps from the adjoint after its last one, producing the gradients. The row's last round (the
// only one reaching past L) runs first and checked; past L, dh loads as zero, so the adjoint there is
// zero and adds nothing. dB: the block's warps (consecutive channels) leave their terms in shared
// memory; then thread j of the block adds step j over each run of rows sharing a B group, and adds
// the sum to dB with one atomic, or, deterministic, writes it as that block's own partial row, which
// a fixed-order sum over the few partials per group reduces.
// Two blocks per SM (25 % occupancy) fit in 128 registers without spills on sm_90; sm_80's code
// needs a few more and spills there, so it keeps one block (ptxas then takes about 155).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define A2MAMBA_SCAN_BWD_MIN_BLOCKS 1
#else
#define A2MAMBA_SCAN_BWD_MIN_BLOCKS 2
#endif
template <typename T>
__global__ void __launch_bounds__(kScanWarps* kWarpSize, A2MAMBA_SCAN_BWD_MIN_BLOCKS)
    scan_bwd_kernel(ScanArgs<T> args, ScanBwdArgs<T> out) {
  using S = acc_t<T>;
  static_assert(kScanWarps * kWarpSize == kScanFwdChunk, "the dB reduction gives each thread one step");
  __shared__ ScanBwdShared<S> shared;

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t first_row = int64_t{blockIdx.x} * kScanWarps;
  const int64_t row = first_row + warp;
  // Rows past the end still take part in the block's barriers: they read the block's first row, so
  // every load stays in bounds, and store nothing.
  const bool row_ok = row < args.rows;
  const int64_t safe_row = row_ok ? row : first_row;
  const int valid_rows = static_cast<int>(args.rows - first_row < kScanWarps ? args.rows - first_row : kScanWarps);
  const unsigned cpg = static_cast<unsigned>(args.channels_per_group);
  const int d = static_cast<int>(static_cast<unsigned>(safe_row) % static_cast<unsigned>(args.D));
  const int64_t group_row = static_cast<unsigned>(safe_row) / cpg;
  const int L = args.L;
  const int N = args.N;
  const T* __restrict__ u = args.u + safe_row * L;
  const T* __restrict__ delta = args.delta + safe_row * L;
  const S bias = args.bias != nullptr ? args.bias[d] : S(0);

  if (lane == 0) {
    int run_end = 0;
    int64_t dB_row = 0;
    if (row_ok && (warp == 0 || static_cast<unsigned>(row - 1) / cpg != static_cast<unsigned>(group_row))) {
      run_end = warp + 1;
      while (run_end < valid_rows && static_cast<unsigned>(first_row + run_end) / cpg == group_row) ++run_end;
      // Deterministic: runs start at the group's first row or at a block boundary, so consecutive
      // runs of a group (consecutive blocks) write consecutive partial rows.
      const int64_t group_first = group_row * args.channels_per_group;
      const int64_t part = (row - group_first / kScanWarps * kScanWarps) / kScanWarps;
      dB_row = (out.deterministic ? group_row * out.dB_parts + part : group_row) * N;
    }
    shared.run_end[warp] = run_end;
    shared.dB_row[warp] = dB_row;
  }
  __syncthreads();

  S dbias_sum = S(0);
  with_scan_flags(args.packed, args.softplus, [&]<bool kPacked, bool kSoftplus>() {
    for (int n = 0; n < N; ++n) {
      const S A = args.A[int64_t{d} * N + n];
      const int64_t state_row = (safe_row * N + n) * L;
      const T* __restrict__ B = args.B + (group_row * N + n) * L;
      const S* __restrict__ dh = out.dh + state_row;
      const S* __restrict__ h = out.h + state_row;
      const bool first_state = n == 0;
      const bool last_state = n == N - 1;
      S g_carry = S(0);       // adjoint at the first step of the round processed before (the next in time)
      S a_next_carry = S(0);  // a at that step
      S dA_sum = S(0);

      const auto round = [&]<bool kChecked>(int base) {
        const int t0 = base + lane * kScanItems;
        S u_v[kScanItems], dt_v[kScanItems], b_v[kScanItems], g_v[kScanItems], h_v[kScanItems];
        load_items<kPacked, kChecked>(u, t0, L, u_v);
        load_items<kPacked, kChecked>(delta, t0, L, dt_v);
        load_items<kPacked, kChecked>(B, t0, L, b_v);
        load_items<kPacked, kChecked>(dh, t0, L, g_v);
        load_items<kPacked, kChecked>(h, t0, L, h_v);
        // h_{t0-1}: the previous lane's last state, or for lane 0 the previous round's last one.
        S h_before = __shfl_up_sync(kFullMask, h_v[kScanItems - 1], 1);
        if (lane == 0) h_before = t0 > 0 ? h[t0 - 1] : S(0);
        S a_v[kScanItems], slope_v[kScanItems];  // dt_v becomes dt after the softplus
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          const S x = dt_v[i] + bias;
          if constexpr (kSoftplus) {
            softplus_with_slope(x, dt_v[i], slope_v[i]);
          } else {
            dt_v[i] = x;
            slope_v[i] = S(1);
          }
          a_v[i] = exp_of(dt_v[i] * A);
        }
        // a_{t+1} of this lane's last step: the next lane's first, or the next round's.
        S a_after = __shfl_down_sync(kFullMask, a_v[0], 1);
        if (lane == kWarpSize - 1) a_after = a_next_carry;
        S a_run = S(1), x_run = S(0);  // g_{t0} = a_run * g_{t0 + kScanItems} + x_run
#pragma unroll
        for (int i = kScanItems - 1; i >= 0; --i) {
          const S a_next = i + 1 < kScanItems ? a_v[i + 1] : a_after;
          x_run = a_next * x_run + g_v[i];
          a_run *= a_next;
        }
        scan_affine_down(a_run, x_run, lane);  // now lanes lane..31
        S a_later = __shfl_down_sync(kFullMask, a_run, 1);
        S x_later = __shfl_down_sync(kFullMask, x_run, 1);
        if (lane == kWarpSize - 1) a_later = S(1), x_later = S(0);
        S g = a_later * g_carry + x_later;  // the adjoint after this lane's last step

        S du_v[kScanItems], ddt_v[kScanItems];
        if (first_state) {
#pragma unroll
          for (int i = 0; i < kScanItems; ++i) du_v[i] = ddt_v[i] = S(0);
        } else {
          load_items<kPacked, kChecked>(out.du_acc + safe_row * L, t0, L, du_v);
          load_items<kPacked, kChecked>(out.ddt_acc + safe_row * L, t0, L, ddt_v);
        }
#pragma unroll
        for (int i = kScanItems - 1; i >= 0; --i) {
          const S a_next = i + 1 < kScanItems ? a_v[i + 1] : a_after;
          g = a_next * g + g_v[i];
          const S dt = dt_v[i];
          const S h_prev = i > 0 ? h_v[i - 1] : h_before;
          const S da_a = g * h_prev * a_v[i];  // dL/da_t times a_t
          dA_sum += da_a * dt;
          ddt_v[i] += g * b_v[i] * u_v[i] + da_a * A;
          const S g_dt = g * dt;
          du_v[i] += g_dt * b_v[i];
          g_v[i] = g_dt * u_v[i];  // this step's dB term
        }
        constexpr int kPackS = 16 / static_cast<int>(sizeof(S));
#pragma unroll
        for (int k = 0; k < kScanItems / kPackS; ++k) {
          Pack16<S> pack;
#pragma unroll
          for (int j = 0; j < kPackS; ++j) pack.v[j] = g_v[k * kPackS + j];
          *reinterpret_cast<Pack16<S>*>(&shared.dB[warp][lane * kScanItems + k * kPackS]) = pack;
        }
        if (last_state) {
#pragma unroll
          for (int i = 0; i < kScanItems; ++i) {
            if constexpr (kSoftplus) ddt_v[i] *= slope_v[i];
            dbias_sum += ddt_v[i];
          }
          if (row_ok) {
            store_items<kPacked, kChecked>(out.du + safe_row * L, t0, L, du_v);
            store_items<kPacked, kChecked>(out.ddelta + safe_row * L, t0, L, ddt_v);
          }
        } else if (row_ok) {
          store_items<kPacked, kChecked>(out.du_acc + safe_row * L, t0, L, du_v);
          store_items<kPacked, kChecked>(out.ddt_acc + safe_row * L, t0, L, ddt_v);
        }
        g_carry = __shfl_sync(kFullMask, g, 0);
        a_next_carry = __shfl_sync(kFullMask, a_v[0], 0);

        __syncthreads();
        const int j = threadIdx.x;
        const int t = base + j;
        if (!kChecked || t < L) {
          for (int r = 0; r < valid_rows;) {  // the runs: the same for every thread of the block
            const int end = shared.run_end[r];
            S sum = S(0);
            for (int w = r; w < end; ++w) sum += shared.dB[w][j];
            S* dst = out.dB + (shared.dB_row[r] + n) * int64_t{L} + t;
            if (out.deterministic) {
              *dst = sum;
            } else {
              atomicAdd(dst, sum);
            }
            r = end;
          }
        }
        __syncthreads();  // shared.dB is rewritten by the next round
      };

      const int tail = L % kScanFwdChunk;
      int base = L - tail;
      if (tail != 0) round.template operator()<true>(base);
      for (base -= kScanFwdChunk; base >= 0; base -= kScanFwdChunk) round.template operator()<false>(base);
      dA_sum = warp_sum(dA_sum);
      if (row_ok && lane == 0) out.dA_rows[row * N + n] = dA_sum;
    }
  });
  if (out.dbias_rows != nullptr) {
    dbias_sum = warp_sum(dbias_sum);
    if (row_ok && lane == 0) out.dbias_rows[row] = dbias_sum;
  }
}

}  // namespace a2mamba::cuda_detail
