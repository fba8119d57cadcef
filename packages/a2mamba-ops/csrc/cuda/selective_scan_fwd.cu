// selective_scan_state forward: every hidden state h (batch, D, N, L).
#include "../ops.h"
#include "scan_common.cuh"

namespace a2mamba::cuda_detail {
namespace {

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

}  // namespace
}  // namespace a2mamba::cuda_detail

namespace a2mamba::cuda {

at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus) {
  using namespace cuda_detail;
  check_scan_tensors(u, delta, A, B, delta_bias);
  const c10::cuda::CUDAGuard device_guard(u.device());
  const auto state = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor h = at::empty({u.size(0), u.size(1), A.size(1), u.size(2)}, u.options().dtype(state));
  if (h.numel() == 0) return h;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  A2MAMBA_DISPATCH_FLOATS(u.scalar_type(), "selective_scan_state_fwd", [&] {
    const auto args = make_scan_args<scalar_t>(u, delta, A, B, delta_bias, delta_softplus);
    const auto blocks = static_cast<unsigned>(ceil_div(args.rows, kScanWarps));
    scan_fwd_kernel<scalar_t><<<blocks, kScanWarps * kWarpSize, 0, stream>>>(args, h.mutable_data_ptr<acc_t<scalar_t>>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return h;
}

}  // namespace a2mamba::cuda
