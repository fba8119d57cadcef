// na2d_av forward: out = sum_t attn[t] v[key(t)].
#include "../ops.h"
#include "na2d_common.cuh"

namespace a2mamba::cuda {

at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w) {
  using namespace cuda_detail;
  const NaShape s = make_na_shape(v, kernel_h, kernel_w, dilation_h, dilation_w, "na2d_av");
  TORCH_CHECK(attn.is_cuda() && attn.is_contiguous() && attn.scalar_type() == v.scalar_type() &&
                  attn.sizes() == at::IntArrayRef({v.size(0), v.size(1), v.size(2), v.size(3), kernel_h * kernel_w}),
              "na2d_av (cuda): attn must be a contiguous (batch, heads, H, W, kh*kw) tensor of v's dtype");
  const c10::cuda::CUDAGuard device_guard(v.device());
  at::Tensor out = at::empty_like(v);
  if (out.numel() == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  A2MAMBA_NA_DISPATCH(v.scalar_type(), "na2d_av_fwd", [&] {
    launch_aggregate<scalar_t>(s, attn.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                               out.mutable_data_ptr<scalar_t>(), nullptr, stream, v.get_device());
  });
  return out;
}

}  // namespace a2mamba::cuda
