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
#include "scan_kernels.cuh"

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
