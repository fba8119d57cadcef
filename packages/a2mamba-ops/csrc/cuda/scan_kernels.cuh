// The selective-scan kernels (forward and backward); their launch plans and
// buffers are in scan_launch.cuh, which also derives the backward and its dB
// reduction.
#pragma once

#include "scan_common.cuh"

namespace a2mamba::cuda_detail {

// Forward. A warp walks one (row, state) along L, kScanItems consecutive steps
// per lane (kScanFwdChunk per round): each lane composes its steps' affine maps
// in registers, one shuffle scan per round combines the lanes' compositions,
// and each lane then replays its steps from the state before its first one.
// Loads and stores move whole 16-byte packs where L allows.
template <typename T>
__global__ void __launch_bounds__(kScanFwdRows* kWarpSize)
    scan_fwd_kernel(ScanArgs<T> args, acc_t<T>* __restrict__ h) {
  using S = acc_t<T>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t{blockIdx.x} * kScanFwdRows + threadIdx.x / kWarpSize;
  if (row >= args.rows) return;  // no block-wide synchronisation in this kernel
  // 32-bit division (rows < 2^31): a 64-bit one is a subroutine call.
  const int d = static_cast<int>(static_cast<unsigned>(row) % static_cast<unsigned>(args.D));
  const int64_t group_row = static_cast<unsigned>(row) / static_cast<unsigned>(args.channels_per_group);  // b * G + g
  const int L = args.L;
  const T* __restrict__ u = args.u + row * L;
  const T* __restrict__ delta = args.delta + row * L;
  const S bias = args.bias != nullptr ? args.bias[d] : S(0);

  for (int n = 0; n < args.N; ++n) {
    const S A = args.A[int64_t{d} * args.N + n];
    const T* __restrict__ B = args.B + (group_row * args.N + n) * L;
    S* __restrict__ h_row = h + (row * args.N + n) * L;
    S carry = S(0);
    for (int base = 0; base < L; base += kScanFwdChunk) {
      const int t0 = base + lane * kScanItems;
      S u_v[kScanItems], a_v[kScanItems], x_v[kScanItems];
      load_items(u, t0, L, args.packed, u_v);
      load_items(delta, t0, L, args.packed, a_v);
      load_items(B, t0, L, args.packed, x_v);
      S a_run = S(1), x_run = S(0);  // composition of this lane's maps
#pragma unroll
      for (int i = 0; i < kScanItems; ++i) {
        S dt = a_v[i] + bias;
        if (args.softplus) dt = softplus(dt);
        const bool valid = t0 + i < L;
        a_v[i] = valid ? exp_of(dt * A) : S(1);  // past the end: the identity map
        x_v[i] = valid ? dt * x_v[i] * u_v[i] : S(0);
        x_run = a_v[i] * x_run + x_v[i];
        a_run *= a_v[i];
      }
      scan_affine_up(a_run, x_run, lane);  // now lanes 0..lane
      S a_before = __shfl_up_sync(kFullMask, a_run, 1);
      S x_before = __shfl_up_sync(kFullMask, x_run, 1);
      if (lane == 0) a_before = S(1), x_before = S(0);
      S state = a_before * carry + x_before;
#pragma unroll
      for (int i = 0; i < kScanItems; ++i) {
        state = a_v[i] * state + x_v[i];
        u_v[i] = state;
      }
      store_items(h_row, t0, L, args.packed, u_v);
      carry = __shfl_sync(kFullMask, a_run * carry + x_run, kWarpSize - 1);
    }
  }
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

// Backward. A warp walks one (row, state) from the end of L, kScanItems
// consecutive steps per lane, in the forward kernel's structure run in
// reverse: each lane composes its steps' adjoint maps g -> a_{t+1} g + dh_t,
// one reverse shuffle scan per round combines the lanes, and each lane replays
// its steps from the adjoint after its last one, producing the gradients.
// dB: the block's warps (consecutive channels) add their rows in shared
// memory; each run of rows sharing a B group then adds its sum to dB with one
// atomic per step, or, deterministic, writes it as that block's own partial
// row, which a fixed-order sum over the few partials per group reduces.
// One block per SM is enough for ptxas: with no bound it squeezes this kernel
// into 128 registers on sm_80 and spills to fit two.
template <typename T>
__global__ void __launch_bounds__(kScanWarps* kWarpSize, 1)
    scan_bwd_kernel(ScanArgs<T> args, ScanBwdArgs<T> out) {
  using S = acc_t<T>;
  __shared__ S dB_shared[kScanWarps][kScanFwdChunk];

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t first_row = int64_t{blockIdx.x} * kScanWarps;
  const int64_t row = first_row + warp;
  // Rows past the end still take part in the block's barriers, with zero work.
  const bool row_ok = row < args.rows;
  const int64_t safe_row = row_ok ? row : first_row;
  const unsigned cpg = static_cast<unsigned>(args.channels_per_group);
  const int d = static_cast<int>(static_cast<unsigned>(safe_row) % static_cast<unsigned>(args.D));
  const int64_t group_row = static_cast<unsigned>(safe_row) / cpg;
  const int L = args.L;
  const int L_row = row_ok ? L : 0;  // steps this warp loads (none for a padding row)
  const int N = args.N;
  const T* __restrict__ u = args.u + safe_row * L;
  const T* __restrict__ delta = args.delta + safe_row * L;
  const S bias = args.bias != nullptr ? args.bias[d] : S(0);

  // Warps that start a run of rows sharing one B group reduce that run's dB.
  const int64_t my_group = static_cast<unsigned>(row) / cpg;
  const bool leads_group = row_ok && (warp == 0 || static_cast<unsigned>(row - 1) / cpg != my_group);
  int run = 0;
  if (leads_group) {
    while (warp + run < kScanWarps && row + run < args.rows && static_cast<unsigned>(row + run) / cpg == my_group) ++run;
  }
  // Deterministic: which of its group's partial rows this run writes (runs start at the group's
  // first row or at a block boundary, so consecutive runs of a group get consecutive parts).
  const int64_t group_first = my_group * args.channels_per_group;
  const int part = static_cast<int>(static_cast<unsigned>(row - group_first / kScanWarps * kScanWarps) / kScanWarps);

  S dbias_sum = S(0);
  const int last_chunk = (L - 1) / kScanFwdChunk;
  for (int n = 0; n < N; ++n) {
    const S A = args.A[int64_t{d} * N + n];
    const int64_t state_row = (safe_row * N + n) * L;
    const T* __restrict__ B = args.B + (group_row * N + n) * L;
    const S* __restrict__ dh = out.dh + state_row;
    const S* __restrict__ h = out.h + state_row;
    const bool first_state = n == 0;
    const bool last_state = n == N - 1;
    S g_carry = S(0);       // adjoint at the first step of the round processed before (the next one in time)
    S a_next_carry = S(0);  // a at that step; a_L = 0 past the end
    S dA_sum = S(0);

    for (int chunk = last_chunk; chunk >= 0; --chunk) {
      const int base = chunk * kScanFwdChunk;
      const int t0 = base + lane * kScanItems;
      S u_v[kScanItems], dt_v[kScanItems], b_v[kScanItems], g_v[kScanItems], h_v[kScanItems], a_v[kScanItems];
      load_items(u, t0, L_row, args.packed, u_v);
      load_items(delta, t0, L_row, args.packed, dt_v);
      load_items(B, t0, L_row, args.packed, b_v);
      load_items(dh, t0, L_row, args.packed, g_v);
      load_items(h, t0, L_row, args.packed, h_v);
      // h_{t0-1}: the previous lane's last state, or for lane 0 the previous round's last one.
      S h_before = __shfl_up_sync(kFullMask, h_v[kScanItems - 1], 1);
      if (lane == 0) h_before = (t0 > 0 && t0 - 1 < L_row) ? h[t0 - 1] : S(0);
      S sp_v[kScanItems];  // dt after the softplus; dt_v keeps delta + bias for its derivative
#pragma unroll
      for (int i = 0; i < kScanItems; ++i) {
        dt_v[i] += bias;
        sp_v[i] = args.softplus ? softplus(dt_v[i]) : dt_v[i];
        a_v[i] = t0 + i < L_row ? exp_of(sp_v[i] * A) : S(0);
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
      if (!first_state) {
        load_items(out.du_acc + safe_row * L, t0, L_row, args.packed, du_v);
        load_items(out.ddt_acc + safe_row * L, t0, L_row, args.packed, ddt_v);
      } else {
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) du_v[i] = ddt_v[i] = S(0);
      }
#pragma unroll
      for (int i = kScanItems - 1; i >= 0; --i) {
        const S a_next = i + 1 < kScanItems ? a_v[i + 1] : a_after;
        g = a_next * g + g_v[i];
        const S dt = sp_v[i];
        const S h_prev = i > 0 ? h_v[i - 1] : h_before;
        const S da = g * h_prev;
        dA_sum += da * a_v[i] * dt;
        const S ddt = ddt_v[i] + g * b_v[i] * u_v[i] + da * a_v[i] * A;
        du_v[i] += g * dt * b_v[i];
        dB_shared[warp][lane * kScanItems + i] = g * dt * u_v[i];
        ddt_v[i] = last_state && args.softplus ? ddt * softplus_grad(dt_v[i]) : ddt;
        if (last_state) dbias_sum += ddt_v[i];
      }
      if (last_state) {
        store_items(out.du + safe_row * L, t0, L_row, args.packed, du_v);
        store_items(out.ddelta + safe_row * L, t0, L_row, args.packed, ddt_v);
      } else {
        store_items(out.du_acc + safe_row * L, t0, L_row, args.packed, du_v);
        store_items(out.ddt_acc + safe_row * L, t0, L_row, args.packed, ddt_v);
      }
      g_carry = __shfl_sync(kFullMask, g, 0);
      a_next_carry = __shfl_sync(kFullMask, a_v[0], 0);

      __syncthreads();
      if (leads_group) {
        S* dB_row = out.deterministic
                        ? out.dB + ((my_group * out.dB_parts + part) * N + n) * int64_t{L}
                        : out.dB + (my_group * N + n) * int64_t{L};
#pragma unroll
        for (int r = 0; r < kScanItems; ++r) {
          const int j = r * kWarpSize + lane;
          const int t = base + j;
          S sum = S(0);
          for (int w = 0; w < run; ++w) sum += dB_shared[warp + w][j];
          if (t < L) {
            if (out.deterministic) {
              dB_row[t] = sum;
            } else {
              atomicAdd(dB_row + t, sum);
            }
          }
        }
      }
      __syncthreads();  // dB_shared is rewritten by the next round
    }
    dA_sum = warp_sum(dA_sum);
    if (row_ok && lane == 0) out.dA_rows[row * N + n] = dA_sum;
  }
  if (out.dbias_rows != nullptr) {
    dbias_sum = warp_sum(dbias_sum);
    if (row_ok && lane == 0) out.dbias_rows[row] = dbias_sum;
  }
}

}  // namespace a2mamba::cuda_detail
