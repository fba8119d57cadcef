#include "ops.h"
namespace a2mamba::cpu {
at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb, int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) { TORCH_CHECK(false, "stub"); }
std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q, const at::Tensor& k, bool has_rpb, int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) { TORCH_CHECK(false, "stub"); }
at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) { TORCH_CHECK(false, "stub"); }
std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) { TORCH_CHECK(false, "stub"); }
}
