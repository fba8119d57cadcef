// The selective-scan kernels (forward and backward); the launchers are in
// selective_scan_fwd.cu and selective_scan_bwd.cu.
// The backward's derivation and its dB reduction are described at the top of
// selective_scan_bwd.cu.
#pragma once

#include "scan_common.cuh"

namespace a2mamba::cuda_detail {

template <typename T>
__global__ void __launch_bounds__(kScanWarps* kWarpSize)
    scan_fwd_kernel(ScanArgs<T> args, acc_t<T>* __restrict__ h) {
  using S = acc_t<T>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = int64_t{blockIdx.x} * kScanWarps + threadIdx.x / kWarpSize;
  if (row >= args.rows) return;  // no block-wide synchronisation in this kernel
  const int d = static_cast<int>(row % args.D);
  const int64_t group_row = row / args.channels_per_group;  // = b * G + g
  const int L = args.L;
  const T* __restrict__ u = args.u + row * L;
  const T* __restrict__ delta = args.delta + row * L;
  const S bias = args.bias != nullptr ? args.bias[d] : S(0);

  for (int n = 0; n < args.N; ++n) {
    const S A = args.A[int64_t{d} * args.N + n];
    const T* __restrict__ B = args.B + (group_row * args.N + n) * L;
    S* __restrict__ h_row = h + (row * args.N + n) * L;
    S carry = S(0);
    for (int base = 0; base < L; base += kScanChunk) {
      S u_v[kScanRounds], dt_v[kScanRounds], b_v[kScanRounds];
#pragma unroll
      for (int r = 0; r < kScanRounds; ++r) {
        const int t = base + r * kWarpSize + lane;
        const bool valid = t < L;
        u_v[r] = valid ? load_acc(u + t) : S(0);
        dt_v[r] = valid ? load_acc(delta + t) : S(0);
        b_v[r] = valid ? load_acc(B + t) : S(0);
      }
#pragma unroll
      for (int r = 0; r < kScanRounds; ++r) {
        const int t = base + r * kWarpSize + lane;
        if (base + r * kWarpSize >= L) break;  // warp-uniform
        S dt = dt_v[r] + bias;
        if (args.softplus) dt = softplus(dt);
        S a = exp_of(dt * A);
        S x = dt * b_v[r] * u_v[r];
        scan_affine_up(a, x, lane);
        const S state = a * carry + x;
        carry = __shfl_sync(kFullMask, state, kWarpSize - 1);
        if (t < L) h_row[t] = state;
      }
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
  acc_t<T>* dB;        // atomic: (batch, G, N, L); deterministic: (batch, D, N, L)
  bool deterministic;
};

template <typename T>
__global__ void __launch_bounds__(kScanWarps* kWarpSize)
    scan_bwd_kernel(ScanArgs<T> args, ScanBwdArgs<T> out) {
  using S = acc_t<T>;
  __shared__ S dB_shared[kScanWarps][kScanChunk];

  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t first_row = int64_t{blockIdx.x} * kScanWarps;
  const int64_t row = first_row + warp;
  // Rows past the end still take part in the block's barriers, with zero work.
  const bool row_ok = row < args.rows;
  const int64_t safe_row = row_ok ? row : first_row;
  const int d = static_cast<int>(safe_row % args.D);
  const int64_t group_row = safe_row / args.channels_per_group;
  const int L = args.L;
  const int N = args.N;
  const T* __restrict__ u = args.u + safe_row * L;
  const T* __restrict__ delta = args.delta + safe_row * L;
  const S bias = args.bias != nullptr ? args.bias[d] : S(0);

  // Warps that start a run of rows sharing one B group reduce that run's dB.
  const int64_t my_group = row / args.channels_per_group;
  const bool leads_group = row_ok && (warp == 0 || (row - 1) / args.channels_per_group != my_group);
  int run = 0;
  if (leads_group) {
    while (warp + run < kScanWarps && row + run < args.rows && (row + run) / args.channels_per_group == my_group) ++run;
  }

  S dbias_sum = S(0);
  const int last_chunk = (L - 1) / kScanChunk;
  for (int n = 0; n < N; ++n) {
    const S A = args.A[int64_t{d} * N + n];
    const int64_t state_row = (safe_row * N + n) * L;
    const T* __restrict__ B = args.B + (group_row * N + n) * L;
    const S* __restrict__ dh = out.dh + state_row;
    const S* __restrict__ h = out.h + state_row;
    const bool first_state = n == 0;
    const bool last_state = n == N - 1;
    S g_carry = S(0);       // g at the first step of the round processed before (the next one in time)
    S a_next_carry = S(0);  // a at that step; a_L = 0 past the end
    S dA_sum = S(0);

    for (int chunk = last_chunk; chunk >= 0; --chunk) {
      const int base = chunk * kScanChunk;
      S u_v[kScanRounds], dt_raw_v[kScanRounds], b_v[kScanRounds], dh_v[kScanRounds], h_prev_v[kScanRounds];
#pragma unroll
      for (int r = 0; r < kScanRounds; ++r) {
        const int t = base + r * kWarpSize + lane;
        const bool valid = row_ok && t < L;
        u_v[r] = valid ? load_acc(u + t) : S(0);
        dt_raw_v[r] = (valid ? load_acc(delta + t) : S(0)) + bias;
        b_v[r] = valid ? load_acc(B + t) : S(0);
        dh_v[r] = valid ? dh[t] : S(0);
        h_prev_v[r] = (valid && t > 0) ? h[t - 1] : S(0);
      }
#pragma unroll
      for (int r = kScanRounds - 1; r >= 0; --r) {
        const int t = base + r * kWarpSize + lane;
        const bool valid = row_ok && t < L;
        const S dt = args.softplus ? softplus(dt_raw_v[r]) : dt_raw_v[r];
        const S a = valid ? exp_of(dt * A) : S(0);
        // Lane i needs a_{t+1}: its upper neighbour's, or the carried one for lane 31.
        S a_next = __shfl_down_sync(kFullMask, a, 1);
        if (lane == kWarpSize - 1) a_next = a_next_carry;
        S scan_a = a_next;
        S scan_x = dh_v[r];
        scan_affine_down(scan_a, scan_x, lane);
        const S g = scan_a * g_carry + scan_x;
        g_carry = __shfl_sync(kFullMask, g, 0);
        a_next_carry = __shfl_sync(kFullMask, a, 0);

        const S da = g * h_prev_v[r];
        dA_sum += valid ? da * a * dt : S(0);
        S ddt = g * b_v[r] * u_v[r] + da * a * A;
        S du = g * dt * b_v[r];
        const S dB = valid ? g * dt * u_v[r] : S(0);
        if (valid) {
          const int64_t idx = safe_row * L + t;
          if (!first_state) {
            ddt += out.ddt_acc[idx];
            du += out.du_acc[idx];
          }
          if (last_state) {
            const S ddelta = args.softplus ? ddt * softplus_grad(dt_raw_v[r]) : ddt;
            out.ddelta[idx] = static_cast<T>(ddelta);
            out.du[idx] = static_cast<T>(du);
            dbias_sum += ddelta;
          } else {
            out.ddt_acc[idx] = ddt;
            out.du_acc[idx] = du;
          }
          if (out.deterministic) out.dB[state_row + t] = dB;
        }
        dB_shared[warp][r * kWarpSize + lane] = dB;
      }
      if (!out.deterministic) {
        __syncthreads();
        if (leads_group) {
#pragma unroll
          for (int r = 0; r < kScanRounds; ++r) {
            const int t = base + r * kWarpSize + lane;
            S sum = S(0);
            for (int w = 0; w < run; ++w) sum += dB_shared[warp + w][r * kWarpSize + lane];
            if (t < L) atomicAdd(out.dB + (my_group * N + n) * L + t, sum);
          }
        }
        __syncthreads();  // dB_shared is rewritten by the next chunk
      }
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
