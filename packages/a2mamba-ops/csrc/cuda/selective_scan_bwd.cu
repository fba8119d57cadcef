// selective_scan_state backward.
//
// With a_t = exp(dt_t A), x_t = dt_t B_t u_t and h_t = a_t h_{t-1} + x_t, the
// adjoint g_t = dL/dh_t (total) obeys g_t = dh_t + a_{t+1} g_{t+1}: a reverse
// scan of the same affine form as the forward, so each warp walks its row from
// the end. The saved forward states give h_{t-1}, so nothing is recomputed and
// the only extra memory is O(batch * D * N) partial sums (plus, for N > 1, two
// float (batch, D, L) accumulators, and in deterministic mode the per-channel
// dB rows described below).
//
//   dx_t = g_t                     da_t = g_t h_{t-1}
//   du_t += g_t dt_t B_t           dB_t += g_t dt_t u_t    (summed over the group's channels)
//   ddt_t += g_t B_t u_t + da_t a_t A
//   dA   += da_t a_t dt_t          ddelta = ddt * softplus'(delta + bias)
//
// dB is shared by the channels of a group: the warps of a block (consecutive
// channels) first add their contributions in shared memory, then one atomic add
// per group and step goes to a float accumulator (as mamba-ssm does). Under
// torch.use_deterministic_algorithms(True) every channel writes its own dB row
// and a fixed-order torch sum reduces them instead.
#include "../ops.h"
#include "scan_common.cuh"

namespace a2mamba::cuda_detail {
namespace {

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

}  // namespace
}  // namespace a2mamba::cuda_detail

namespace a2mamba::cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h) {
  using namespace cuda_detail;
  check_scan_tensors(u, delta, A, B, delta_bias);
  const auto state = A.scalar_type();
  const auto expected = std::vector<int64_t>{u.size(0), u.size(1), A.size(1), u.size(2)};
  TORCH_CHECK(dh.sizes() == expected && h.sizes() == expected && dh.scalar_type() == state &&
                  h.scalar_type() == state && dh.is_contiguous() && h.is_contiguous() && dh.is_cuda() && h.is_cuda(),
              "selective_scan_state_bwd (cuda): dh and h must be contiguous (batch, D, N, L) ", state, " tensors");
  const c10::cuda::CUDAGuard device_guard(u.device());
  const bool has_bias = delta_bias.has_value() && delta_bias->defined();
  const int64_t batch = u.size(0), D = u.size(1), L = u.size(2), N = A.size(1), G = B.size(1);
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  const auto state_opts = u.options().dtype(state);

  at::Tensor du = at::empty_like(u);
  at::Tensor ddelta = at::empty_like(delta);
  at::Tensor dA_rows = at::empty({batch, D, N}, state_opts);
  at::Tensor dbias_rows = has_bias ? at::empty({batch, D}, state_opts) : at::Tensor();
  at::Tensor du_acc, ddt_acc;
  if (N > 1) {
    du_acc = at::empty({batch, D, L}, state_opts);
    ddt_acc = at::empty({batch, D, L}, state_opts);
  }
  at::Tensor dB_buffer = deterministic ? at::empty({batch, D, N, L}, state_opts) : at::zeros({batch, G, N, L}, state_opts);

  if (u.numel() > 0 && N > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    A2MAMBA_DISPATCH_FLOATS(u.scalar_type(), "selective_scan_state_bwd", [&] {
      using S = acc_t<scalar_t>;
      const auto args = make_scan_args<scalar_t>(u, delta, A, B, delta_bias, delta_softplus);
      ScanBwdArgs<scalar_t> out;
      out.dh = dh.const_data_ptr<S>();
      out.h = h.const_data_ptr<S>();
      out.du = du.mutable_data_ptr<scalar_t>();
      out.ddelta = ddelta.mutable_data_ptr<scalar_t>();
      out.du_acc = N > 1 ? du_acc.mutable_data_ptr<S>() : nullptr;
      out.ddt_acc = N > 1 ? ddt_acc.mutable_data_ptr<S>() : nullptr;
      out.dA_rows = dA_rows.mutable_data_ptr<S>();
      out.dbias_rows = has_bias ? dbias_rows.mutable_data_ptr<S>() : nullptr;
      out.dB = dB_buffer.mutable_data_ptr<S>();
      out.deterministic = deterministic;
      const auto blocks = static_cast<unsigned>(ceil_div(args.rows, kScanWarps));
      scan_bwd_kernel<scalar_t><<<blocks, kScanWarps * kWarpSize, 0, stream>>>(args, out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  } else {
    du.zero_();
    ddelta.zero_();
    dA_rows.zero_();
    if (has_bias) dbias_rows.zero_();
    if (deterministic) dB_buffer.zero_();
  }

  at::Tensor dA = dA_rows.sum(0);
  at::Tensor dbias = has_bias ? dbias_rows.sum(0) : at::Tensor();
  at::Tensor dB = deterministic ? dB_buffer.view({batch, G, D / G, N, L}).sum(2) : dB_buffer;
  return {du, ddelta, dA, dB, dbias};
}

}  // namespace a2mamba::cuda
