// na2d_av forward: out = sum_t attn[t] v[key(t)].
#include "../ops.h"
#include "na2d_launch.cuh"

namespace a2mamba::cuda {

at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w) {
  using namespace cuda_detail;
  TORCH_CHECK(attn.is_cuda() && v.is_cuda(), "na2d_av (cuda): expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(v.device());
  return run_na2d_av_fwd(cuda_launch_on(v), attn, v, kernel_h, kernel_w, dilation_h, dilation_w);
}

}  // namespace a2mamba::cuda
