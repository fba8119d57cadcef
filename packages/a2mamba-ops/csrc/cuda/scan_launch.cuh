// The selective-scan ops' bodies: checks, outputs, accumulators, launch plans
// and the reductions after the kernels. Shared by the .cu launchers
// (CudaLaunch) and the CPU emulation; see launch.cuh.
#pragma once

#include "launch.cuh"
#include "scan_kernels.cuh"

namespace a2mamba::cuda_detail {

// Few rows (small batch, few channels) would leave most of a GPU idle, a warp each: L is then cut
// into segments of whole rounds, at least kScanMinSegmentRounds long, until there are some
// kScanTargetWarps warps. A first kernel sums up every segment but the last (what it does to the
// state); the second starts each segment from the state the ones before it leave. Each segment but
// the last is read twice.
constexpr int64_t kScanTargetWarps = 4096;  // an H100/H200: 132 SMs of 64 warp slots, half full
constexpr int64_t kScanMinSegmentRounds = 4;

template <typename T>
void choose_scan_fwd_segments(ScanArgs<T>& args) {
  const int64_t rounds = ceil_div(args.L, kScanFwdChunk);
  const int64_t wanted = std::min(ceil_div(kScanTargetWarps, std::max<int64_t>(args.rows, 1)),
                                  std::max<int64_t>(rounds / kScanMinSegmentRounds, 1));
  const int64_t segment_rounds = ceil_div(rounds, wanted);
  args.segment_len = static_cast<int>(segment_rounds * kScanFwdChunk);
  args.segments = static_cast<int>(ceil_div(rounds, segment_rounds));
}

template <typename T>
LaunchPlan scan_fwd_plan(const ScanArgs<T>& args) {
  return {ceil_div(args.rows, kScanFwdRows) * args.segments, kScanFwdRows * kWarpSize, 0};
}

template <typename T>
LaunchPlan scan_bwd_plan(const ScanArgs<T>& args) {
  return {ceil_div(args.rows, kScanWarps), kScanWarps * kWarpSize, 0};
}

template <class Launch>
at::Tensor run_scan_fwd(const Launch& launch, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                        const at::Tensor& B, const std::optional<at::Tensor>& delta_bias, bool delta_softplus) {
  check_scan_tensors(u, delta, A, B, delta_bias);
  const auto state = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor h = at::empty({u.size(0), u.size(1), A.size(1), u.size(2)}, u.options().dtype(state));
  if (h.numel() == 0) return h;
  A2MAMBA_DISPATCH_FLOATS(u.scalar_type(), "selective_scan_state_fwd", [&] {
    using S = acc_t<scalar_t>;
    auto args = make_scan_args<scalar_t>(u, delta, A, B, delta_bias, delta_softplus);
    choose_scan_fwd_segments(args);
    at::Tensor summary;  // (rows, N, segments, 2): what each segment does to the state
    if (args.segments > 1) {
      summary = at::empty({args.rows, args.N, args.segments, 2}, u.options().dtype(state));
      launch(scan_fwd_summary_kernel<scalar_t>, scan_fwd_plan(args), "selective_scan_state_fwd (segments)", args,
             summary.mutable_data_ptr<S>());
    }
    launch(scan_fwd_kernel<scalar_t>, scan_fwd_plan(args), "selective_scan_state_fwd", args, h.mutable_data_ptr<S>(),
           args.segments > 1 ? summary.const_data_ptr<S>() : static_cast<const S*>(nullptr));
  });
  return h;
}

// Backward.
//
// With a_t = exp(dt_t A), x_t = dt_t B_t u_t and h_t = a_t h_{t-1} + x_t, the
// adjoint g_t = dL/dh_t (total) obeys g_t = dh_t + a_{t+1} g_{t+1}: a reverse
// scan of the same affine form as the forward, so each warp walks its row from
// the end. The saved forward states give h_{t-1}, so nothing is recomputed and
// the only extra memory is O(batch * D * N) partial sums (plus, for N > 1, two
// float (batch, D, L) accumulators, and in deterministic mode the per-block dB
// partials described below).
//
//   dx_t = g_t                     da_t = g_t h_{t-1}
//   du_t += g_t dt_t B_t           dB_t += g_t dt_t u_t    (summed over the group's channels)
//   ddt_t += g_t B_t u_t + da_t a_t A
//   dA   += da_t a_t dt_t          ddelta = ddt * softplus'(delta + bias)
//
// dB is shared by the channels of a group: the warps of a block (consecutive
// channels) first add their contributions in shared memory, then one atomic add
// per group and step goes to a float accumulator (as mamba-ssm does). Under
// torch.use_deterministic_algorithms(True) each block writes its sum as its own
// partial row instead, (batch, G, about D/G/8, N, L) in all, which a fixed-order
// torch sum reduces: 1/8 of a per-channel buffer.
template <class Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_scan_bwd(
    const Launch& launch, const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h,
    bool deterministic) {
  check_scan_tensors(u, delta, A, B, delta_bias);
  const auto state = A.scalar_type();
  const auto expected = std::vector<int64_t>{u.size(0), u.size(1), A.size(1), u.size(2)};
  TORCH_CHECK(dh.sizes() == expected && h.sizes() == expected && dh.scalar_type() == state &&
                  h.scalar_type() == state && dh.is_contiguous() && h.is_contiguous(),
              "selective_scan_state_bwd (cuda): dh and h must be contiguous (batch, D, N, L) ", state, " tensors");
  const bool has_bias = delta_bias.has_value() && delta_bias->defined();
  const int64_t batch = u.size(0), D = u.size(1), L = u.size(2), N = A.size(1), G = B.size(1);
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
  const int dB_parts = scan_dB_parts(D / G);
  // Zeros: a group's unused partial rows must read as zero, and atomics add to the buffer.
  at::Tensor dB_buffer = deterministic ? at::zeros({batch, G, dB_parts, N, L}, state_opts)
                                       : at::zeros({batch, G, N, L}, state_opts);

  if (u.numel() > 0 && N > 0) {
    A2MAMBA_DISPATCH_FLOATS(u.scalar_type(), "selective_scan_state_bwd", [&] {
      using S = acc_t<scalar_t>;
      auto args = make_scan_args<scalar_t>(u, delta, A, B, delta_bias, delta_softplus);
      // The backward also moves dh and h (the caller's) in packs.
      args.packed = args.packed && starts_aligned(dh) && starts_aligned(h);
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
      out.dB_parts = dB_parts;
      out.deterministic = deterministic;
      launch(scan_bwd_kernel<scalar_t>, scan_bwd_plan(args), "selective_scan_state_bwd", args, out);
    });
  } else {
    du.zero_();
    ddelta.zero_();
    dA_rows.zero_();
    if (has_bias) dbias_rows.zero_();
  }

  at::Tensor dA = dA_rows.sum(0);
  at::Tensor dbias = has_bias ? dbias_rows.sum(0) : at::Tensor();
  at::Tensor dB = deterministic ? dB_buffer.sum(2) : dB_buffer;
  return {du, ddelta, dA, dB, dbias};
}

}  // namespace a2mamba::cuda_detail
