// selective_scan_state backward (see run_scan_bwd in scan_launch.cuh).
#include <ATen/Context.h>

#include "../ops.h"
#include "scan_launch.cuh"

namespace a2mamba::cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h) {
  using namespace cuda_detail;
  TORCH_CHECK(dh.is_cuda() && u.is_cuda() && delta.is_cuda() && A.is_cuda() && B.is_cuda() && h.is_cuda() &&
                  (!delta_bias.has_value() || !delta_bias->defined() || delta_bias->is_cuda()),
              "selective_scan_state_bwd (cuda): every tensor must be on a CUDA device");
  const c10::cuda::CUDAGuard device_guard(u.device());
  return run_scan_bwd(cuda_launch_on(u), dh, u, delta, A, B, delta_bias, delta_softplus, h,
                      at::globalContext().deterministicAlgorithms());
}

}  // namespace a2mamba::cuda
