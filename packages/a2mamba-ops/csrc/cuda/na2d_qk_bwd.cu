// na2d_qk backward: dq = sum_t dattn[t] k[key(t)], dk = the transpose, and
// drpb as a fixed-order sum of per-tile tables (deterministic, no atomics).
#include "../ops.h"
#include "na2d_common.cuh"

namespace a2mamba::cuda {

std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w) {
  using namespace cuda_detail;
  const NaShape s = make_na_shape(q, kernel_h, kernel_w, dilation_h, dilation_w, "na2d_qk_bwd");
  TORCH_CHECK(k.sizes() == q.sizes() && k.scalar_type() == q.scalar_type() && k.is_contiguous() && k.is_cuda(),
              "na2d_qk_bwd (cuda): k must match q");
  TORCH_CHECK(dattn.is_cuda() && dattn.is_contiguous() && dattn.scalar_type() == q.scalar_type() &&
                  dattn.sizes() == at::IntArrayRef({q.size(0), q.size(1), q.size(2), q.size(3), kernel_h * kernel_w}),
              "na2d_qk_bwd (cuda): dattn must be a contiguous (batch, heads, H, W, kh*kw) tensor of q's dtype");
  const c10::cuda::CUDAGuard device_guard(q.device());
  at::Tensor dq = at::empty_like(q);
  at::Tensor dk = at::empty_like(k);
  const auto state = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t entries = (2 * kernel_h - 1) * (2 * kernel_w - 1);
  at::Tensor drpb_tiles;
  if (has_rpb) drpb_tiles = at::empty({q.size(0), q.size(1), s.tiles, entries}, q.options().dtype(state));
  if (s.batch_heads > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    A2MAMBA_NA_DISPATCH(q.scalar_type(), "na2d_qk_bwd", [&] {
      launch_aggregate<scalar_t>(s, dattn.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                                 dq.mutable_data_ptr<scalar_t>(),
                                 has_rpb ? drpb_tiles.mutable_data_ptr<acc_t<scalar_t>>() : nullptr, stream,
                                 q.get_device());
      launch_scatter<scalar_t>(s, dattn.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(),
                               dk.mutable_data_ptr<scalar_t>(), stream, q.get_device());
    });
  } else if (has_rpb) {
    drpb_tiles.zero_();
  }
  at::Tensor drpb;
  if (has_rpb) drpb = drpb_tiles.sum(at::IntArrayRef{0, 2}).view({q.size(1), 2 * kernel_h - 1, 2 * kernel_w - 1});
  return {dq, dk, drpb};
}

}  // namespace a2mamba::cuda
