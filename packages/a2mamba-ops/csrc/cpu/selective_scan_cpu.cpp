#include "ops.h"
namespace a2mamba::cpu {
at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const std::optional<at::Tensor>& delta_bias, bool delta_softplus) { TORCH_CHECK(false, "stub"); }
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h) { TORCH_CHECK(false, "stub"); }
}
