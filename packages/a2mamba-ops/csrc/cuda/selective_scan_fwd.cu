// selective_scan_state forward: every hidden state h (batch, D, N, L).
#include "../ops.h"
#include "scan_launch.cuh"

namespace a2mamba::cuda {

at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus) {
  using namespace cuda_detail;
  TORCH_CHECK(u.is_cuda() && delta.is_cuda() && A.is_cuda() && B.is_cuda() &&
                  (!delta_bias.has_value() || !delta_bias->defined() || delta_bias->is_cuda()),
              "selective_scan_state (cuda): every tensor must be on a CUDA device");
  const c10::cuda::CUDAGuard device_guard(u.device());
  return run_scan_fwd(cuda_launch_on(u), u, delta, A, B, delta_bias, delta_softplus);
}

}  // namespace a2mamba::cuda
