// Kernel entry points shared by the bindings and the backends.
//
// Contract with the Python layer (a2mamba_ops): every tensor argument is
// contiguous, on one device, and already validated (shapes, dtypes, sizes);
// kernels only TORCH_CHECK what would otherwise corrupt memory.
//
// Layouts:
//   scan:  u, delta (batch, D, L); A (D, N) float32; B (batch, G, N, L);
//          delta_bias (D,) float32 or undefined; h (batch, D, N, L) float32.
//          Channel d uses group d / (D / G).
//   na2d:  q, k, v, out (batch, heads, H, W, c); attn (batch, heads, H, W, kh*kw);
//          rpb (heads, 2*kh-1, 2*kw-1) or undefined.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace a2mamba {

namespace cpu {
at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus);
// Returns du, ddelta, dA, dB, ddelta_bias (undefined when delta_bias is absent).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h);

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w);
// Returns dq, dk, drpb (undefined when has_rpb is false).
std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w);
at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w);
// Returns dattn, dv.
std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v,
                                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h,
                                               int64_t dilation_w);
}  // namespace cpu

#ifdef A2MAMBA_WITH_CUDA
namespace cuda {
// Same signatures and semantics as a2mamba::cpu, for CUDA tensors; they run on
// the current stream of the tensors' device and never synchronise the host.
at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h);
at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w);
std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w);
at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w);
std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v,
                                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h,
                                               int64_t dilation_w);
}  // namespace cuda
#endif

}  // namespace a2mamba
