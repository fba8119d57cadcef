// na2d_qk forward: attn = q . k over each neighbourhood (+ rpb), and its softmax.
#include <ATen/ops/softmax.h>

#include "../ops.h"
#include "na2d_launch.cuh"

namespace a2mamba::cuda {

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  using namespace cuda_detail;
  TORCH_CHECK(q.is_cuda() && k.is_cuda() && (!rpb.has_value() || !rpb->defined() || rpb->is_cuda()),
              "na2d_qk (cuda): expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(q.device());
  return run_na2d_qk_fwd(cuda_launch_on(q), q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w);
}

// Not fused yet on CUDA: the logits kernel, then PyTorch's softmax in float32.
at::Tensor na2d_qk_softmax_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  const at::Tensor logits = na2d_qk_fwd(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w);
  const auto compute = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return at::softmax(logits, -1, compute).to(q.scalar_type());
}

}  // namespace a2mamba::cuda
