// The na2d ops' bodies: shape checks, outputs, launch plans (grid, block,
// shared memory, which logits variant) and the drpb reduction. Shared by the
// .cu launchers (CudaLaunch) and the CPU emulation; see launch.cuh.
#pragma once

#include "launch.cuh"
#include "na2d_common.cuh"

namespace a2mamba::cuda_detail {

inline NaShape make_na_shape(const at::Tensor& t, int64_t kh, int64_t kw, int64_t dh, int64_t dw, const char* op) {
  TORCH_CHECK(t.is_contiguous() && t.dim() == 5, op, " (cuda): expected contiguous (batch, heads, H, W, dim) tensors");
  TORCH_CHECK(kh >= 1 && kw >= 1 && kh % 2 == 1 && kw % 2 == 1 && kh <= kMaxKernel && kw <= kMaxKernel, op,
              " (cuda): kernel sizes must be odd and at most ", kMaxKernel, ", got ", kh, "x", kw);
  TORCH_CHECK(dh >= 1 && dw >= 1, op, " (cuda): dilation must be positive");
  TORCH_CHECK(t.size(2) >= kh * dh && t.size(3) >= kw * dw, op, " (cuda): the map must be at least kernel*dilation");
  TORCH_CHECK(t.size(2) < (1 << 30) && t.size(3) < (1 << 30) && t.size(4) < (1 << 30), op, " (cuda): sizes too large");
  NaShape s;
  s.batch_heads = t.size(0) * t.size(1);
  s.heads = static_cast<int>(t.size(1));
  s.H = static_cast<int>(t.size(2));
  s.W = static_cast<int>(t.size(3));
  s.C = static_cast<int>(t.size(4));
  s.kh = static_cast<int>(kh);
  s.kw = static_cast<int>(kw);
  s.dh = static_cast<int>(dh);
  s.dw = static_cast<int>(dw);
  s.tiles_h = static_cast<int>(ceil_div(group_length(s.H, s.dh, 0), kTile));
  s.tiles_w = static_cast<int>(ceil_div(group_length(s.W, s.dw, 0), kTile));
  s.tiles = int64_t{s.dh} * s.dw * s.tiles_h * s.tiles_w;
  return s;
}

// ------------------------------------------------------------- launch plans

inline int logits_slots(const NaShape& s) { return static_cast<int>(ceil_div(int64_t{s.kh} * s.kw, kWarpSize)); }

template <typename T>
LaunchPlan logits_plan(const NaShape& s) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  const int64_t rect = int64_t{kTile + s.kh - 1} * (kTile + s.kw - 1);
  return {s.batch_heads * s.tiles, kNaThreads, (kTilePixels * CC + rect * (CC + 1)) * static_cast<int64_t>(sizeof(S))};
}

template <typename T>
LaunchPlan aggregate_plan(const NaShape& s) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  const int64_t rect = int64_t{kTile + s.kh - 1} * (kTile + s.kw - 1);
  return {s.batch_heads * s.tiles, kNaThreads,
          (int64_t{kTilePixels} * s.kh * s.kw + rect * (CC + 1)) * static_cast<int64_t>(sizeof(S))};
}

template <typename T>
LaunchPlan scatter_plan(const NaShape& s) {
  using S = acc_t<T>;
  const int64_t rect = int64_t{kTile + 2 * s.kh - 2} * (kTile + 2 * s.kw - 2);
  return {s.batch_heads * s.tiles, kNaThreads, rect * scatter_stride<S>() * static_cast<int64_t>(sizeof(S))};
}

// X and Y (batch, heads, H, W, C) -> (batch, heads, H, W, kh*kw) in `out`.
template <class Launch, typename T>
void launch_logits(const Launch& launch, const NaShape& s, const T* x, const T* y, const T* rpb, T* out) {
  const LaunchPlan plan = logits_plan<T>(s);
  switch (logits_slots(s)) {
    case 1: launch(na_logits_kernel<T, 1>, plan, "na2d logits", s, x, y, rpb, out); break;
    case 2: launch(na_logits_kernel<T, 2>, plan, "na2d logits", s, x, y, rpb, out); break;
    case 3: launch(na_logits_kernel<T, 3>, plan, "na2d logits", s, x, y, rpb, out); break;
    case 4: launch(na_logits_kernel<T, 4>, plan, "na2d logits", s, x, y, rpb, out); break;
    case 5: launch(na_logits_kernel<T, 5>, plan, "na2d logits", s, x, y, rpb, out); break;
    default: launch(na_logits_kernel<T, kMaxSlotsPerLane>, plan, "na2d logits", s, x, y, rpb, out); break;
  }
}

template <class Launch, typename T>
void launch_aggregate(const Launch& launch, const NaShape& s, const T* a, const T* y, T* out,
                      acc_t<T>* bias_partial) {
  launch(na_aggregate_kernel<T>, aggregate_plan<T>(s), "na2d aggregate", s, a, y, out, bias_partial);
}

template <class Launch, typename T>
void launch_scatter(const Launch& launch, const NaShape& s, const T* a, const T* x, T* out) {
  launch(na_scatter_kernel<T>, scatter_plan<T>(s), "na2d scatter", s, a, x, out);
}

inline void check_attn_like(const at::Tensor& attn, const at::Tensor& like, int64_t kh, int64_t kw, const char* op,
                            const char* name) {
  TORCH_CHECK(attn.is_contiguous() && attn.scalar_type() == like.scalar_type() &&
                  attn.sizes() == at::IntArrayRef({like.size(0), like.size(1), like.size(2), like.size(3), kh * kw}),
              op, " (cuda): ", name, " must be a contiguous (batch, heads, H, W, kh*kw) tensor of the inputs' dtype");
}

// ------------------------------------------------------------------ op bodies

template <class Launch>
at::Tensor run_na2d_qk_fwd(const Launch& launch, const at::Tensor& q, const at::Tensor& k,
                           const std::optional<at::Tensor>& rpb, int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  const NaShape s = make_na_shape(q, kh, kw, dh, dw, "na2d_qk");
  TORCH_CHECK(k.sizes() == q.sizes() && k.scalar_type() == q.scalar_type() && k.is_contiguous(),
              "na2d_qk (cuda): k must match q");
  const bool has_rpb = rpb.has_value() && rpb->defined();
  if (has_rpb) {
    TORCH_CHECK(rpb->is_contiguous() && rpb->scalar_type() == q.scalar_type() &&
                    rpb->sizes() == at::IntArrayRef({q.size(1), 2 * kh - 1, 2 * kw - 1}),
                "na2d_qk (cuda): rpb must be a contiguous (heads, 2*kh-1, 2*kw-1) tensor of q's dtype");
  }
  at::Tensor attn = at::empty({q.size(0), q.size(1), q.size(2), q.size(3), kh * kw}, q.options());
  if (attn.numel() == 0) return attn;
  A2MAMBA_DISPATCH_FLOATS(q.scalar_type(), "na2d_qk_fwd", [&] {
    launch_logits<Launch, scalar_t>(launch, s, q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                                    has_rpb ? rpb->const_data_ptr<scalar_t>() : nullptr,
                                    attn.mutable_data_ptr<scalar_t>());
  });
  return attn;
}

// dq = sum_t dattn[t] k[key(t)], dk = the transpose, and drpb as a fixed-order
// sum of per-tile tables (deterministic, no atomics).
template <class Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_na2d_qk_bwd(const Launch& launch, const at::Tensor& dattn,
                                                               const at::Tensor& q, const at::Tensor& k, bool has_rpb,
                                                               int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  const NaShape s = make_na_shape(q, kh, kw, dh, dw, "na2d_qk_bwd");
  TORCH_CHECK(k.sizes() == q.sizes() && k.scalar_type() == q.scalar_type() && k.is_contiguous(),
              "na2d_qk_bwd (cuda): k must match q");
  check_attn_like(dattn, q, kh, kw, "na2d_qk_bwd", "dattn");
  at::Tensor dq = at::empty_like(q);
  at::Tensor dk = at::empty_like(k);
  const auto state = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t entries = (2 * kh - 1) * (2 * kw - 1);
  at::Tensor drpb_tiles;
  if (has_rpb) drpb_tiles = at::empty({q.size(0), q.size(1), s.tiles, entries}, q.options().dtype(state));
  if (s.batch_heads > 0) {
    A2MAMBA_DISPATCH_FLOATS(q.scalar_type(), "na2d_qk_bwd", [&] {
      launch_aggregate<Launch, scalar_t>(launch, s, dattn.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                                         dq.mutable_data_ptr<scalar_t>(),
                                         has_rpb ? drpb_tiles.mutable_data_ptr<acc_t<scalar_t>>() : nullptr);
      launch_scatter<Launch, scalar_t>(launch, s, dattn.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(),
                                       dk.mutable_data_ptr<scalar_t>());
    });
  } else if (has_rpb) {
    drpb_tiles.zero_();
  }
  at::Tensor drpb;
  if (has_rpb) drpb = drpb_tiles.sum(at::IntArrayRef{0, 2}).view({q.size(1), 2 * kh - 1, 2 * kw - 1});
  return {dq, dk, drpb};
}

template <class Launch>
at::Tensor run_na2d_av_fwd(const Launch& launch, const at::Tensor& attn, const at::Tensor& v, int64_t kh, int64_t kw,
                           int64_t dh, int64_t dw) {
  const NaShape s = make_na_shape(v, kh, kw, dh, dw, "na2d_av");
  check_attn_like(attn, v, kh, kw, "na2d_av", "attn");
  at::Tensor out = at::empty_like(v);
  if (out.numel() == 0) return out;
  A2MAMBA_DISPATCH_FLOATS(v.scalar_type(), "na2d_av_fwd", [&] {
    launch_aggregate<Launch, scalar_t>(launch, s, attn.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                                       out.mutable_data_ptr<scalar_t>(), nullptr);
  });
  return out;
}

// dattn = dout . v over each neighbourhood, dv = the transpose.
template <class Launch>
std::tuple<at::Tensor, at::Tensor> run_na2d_av_bwd(const Launch& launch, const at::Tensor& dout,
                                                   const at::Tensor& attn, const at::Tensor& v, int64_t kh, int64_t kw,
                                                   int64_t dh, int64_t dw) {
  const NaShape s = make_na_shape(v, kh, kw, dh, dw, "na2d_av_bwd");
  TORCH_CHECK(dout.is_contiguous() && dout.sizes() == v.sizes() && dout.scalar_type() == v.scalar_type(),
              "na2d_av_bwd (cuda): dout must be a contiguous tensor shaped and typed like v");
  check_attn_like(attn, v, kh, kw, "na2d_av_bwd", "attn");
  at::Tensor dattn = at::empty_like(attn);
  at::Tensor dv = at::empty_like(v);
  if (s.batch_heads > 0) {
    A2MAMBA_DISPATCH_FLOATS(v.scalar_type(), "na2d_av_bwd", [&] {
      launch_logits<Launch, scalar_t>(launch, s, dout.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                                      nullptr, dattn.mutable_data_ptr<scalar_t>());
      launch_scatter<Launch, scalar_t>(launch, s, attn.const_data_ptr<scalar_t>(), dout.const_data_ptr<scalar_t>(),
                                       dv.mutable_data_ptr<scalar_t>());
    });
  }
  return {dattn, dv};
}

}  // namespace a2mamba::cuda_detail
