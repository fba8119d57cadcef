// na2d_qk backward: dq, dk and drpb (see run_na2d_qk_bwd in na2d_launch.cuh).
#include "../ops.h"
#include "na2d_launch.cuh"

namespace a2mamba::cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w) {
  using namespace cuda_detail;
  TORCH_CHECK(dattn.is_cuda() && q.is_cuda() && k.is_cuda(), "na2d_qk_bwd (cuda): expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(q.device());
  return run_na2d_qk_bwd(cuda_launch_on(q), dattn, q, k, has_rpb, kernel_h, kernel_w, dilation_h, dilation_w);
}

}  // namespace a2mamba::cuda
