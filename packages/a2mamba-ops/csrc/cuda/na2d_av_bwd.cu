// na2d_av backward: dattn = dout . v over each neighbourhood, dv = the transpose.
#include "../ops.h"
#include "na2d_common.cuh"

namespace a2mamba::cuda {

std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v,
                                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h,
                                               int64_t dilation_w) {
  using namespace cuda_detail;
  const NaShape s = make_na_shape(v, kernel_h, kernel_w, dilation_h, dilation_w, "na2d_av_bwd");
  TORCH_CHECK(dout.is_cuda() && dout.is_contiguous() && dout.sizes() == v.sizes() &&
                  dout.scalar_type() == v.scalar_type(),
              "na2d_av_bwd (cuda): dout must be a contiguous tensor shaped and typed like v");
  TORCH_CHECK(attn.is_cuda() && attn.is_contiguous() && attn.scalar_type() == v.scalar_type() &&
                  attn.sizes() == at::IntArrayRef({v.size(0), v.size(1), v.size(2), v.size(3), kernel_h * kernel_w}),
              "na2d_av_bwd (cuda): attn must be a contiguous (batch, heads, H, W, kh*kw) tensor of v's dtype");
  const c10::cuda::CUDAGuard device_guard(v.device());
  at::Tensor dattn = at::empty_like(attn);
  at::Tensor dv = at::empty_like(v);
  if (s.batch_heads > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    A2MAMBA_NA_DISPATCH(v.scalar_type(), "na2d_av_bwd", [&] {
      launch_logits<scalar_t>(s, dout.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(), nullptr,
                              dattn.mutable_data_ptr<scalar_t>(), stream, v.get_device());
      launch_scatter<scalar_t>(s, attn.const_data_ptr<scalar_t>(), dout.const_data_ptr<scalar_t>(),
                               dv.mutable_data_ptr<scalar_t>(), stream, v.get_device());
    });
  }
  return {dattn, dv};
}

}  // namespace a2mamba::cuda
