// na2d_qk forward: attn = q . k over each neighbourhood (+ rpb).
#include "../ops.h"
#include "na2d_common.cuh"

namespace a2mamba::cuda {

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  using namespace cuda_detail;
  const NaShape s = make_na_shape(q, kernel_h, kernel_w, dilation_h, dilation_w, "na2d_qk");
  TORCH_CHECK(k.sizes() == q.sizes() && k.scalar_type() == q.scalar_type() && k.is_contiguous() && k.is_cuda(),
              "na2d_qk (cuda): k must match q");
  const bool has_rpb = rpb.has_value() && rpb->defined();
  if (has_rpb) {
    TORCH_CHECK(rpb->is_cuda() && rpb->is_contiguous() && rpb->scalar_type() == q.scalar_type() &&
                    rpb->sizes() == at::IntArrayRef({q.size(1), 2 * kernel_h - 1, 2 * kernel_w - 1}),
                "na2d_qk (cuda): rpb must be a contiguous (heads, 2*kh-1, 2*kw-1) tensor of q's dtype");
  }
  const c10::cuda::CUDAGuard device_guard(q.device());
  at::Tensor attn = at::empty({q.size(0), q.size(1), q.size(2), q.size(3), kernel_h * kernel_w}, q.options());
  if (attn.numel() == 0) return attn;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  A2MAMBA_NA_DISPATCH(q.scalar_type(), "na2d_qk_fwd", [&] {
    launch_logits<scalar_t>(s, q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                            has_rpb ? rpb->const_data_ptr<scalar_t>() : nullptr, attn.mutable_data_ptr<scalar_t>(),
                            stream, q.get_device());
  });
  return attn;
}

}  // namespace a2mamba::cuda
