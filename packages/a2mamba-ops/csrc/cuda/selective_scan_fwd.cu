// selective_scan_state forward: every hidden state h (batch, D, N, L).
#include "../ops.h"
#include "scan_kernels.cuh"

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
