// The CUDA kernels of csrc/cuda, built by the host compiler against fake_cuda.h
// and launched on CPU tensors. The launch code mirrors the launchers in the .cu
// files (which need nvcc and a GPU); see check_kernels.py.
#include "fake_cuda.h"
#include <torch/extension.h>
#include "cuda/scan_kernels.cuh"
#include "cuda/na2d_common.cuh"

using namespace a2mamba::cuda_detail;

#define DISPATCH(dtype, ...) AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "emu", __VA_ARGS__)

at::Tensor scan_fwd(at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B, std::optional<at::Tensor> bias, bool sp) {
  const auto state = u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor h = at::full({u.size(0), u.size(1), A.size(1), u.size(2)}, NAN, u.options().dtype(state));
  DISPATCH(u.scalar_type(), [&] {
    auto args = make_scan_args<scalar_t>(u, delta, A, B, bias, sp);
    emu::launch(scan_fwd_kernel<scalar_t>, (unsigned)ceil_div(args.rows, kScanWarps), kScanWarps * 32, 0, args,
                h.mutable_data_ptr<acc_t<scalar_t>>());
  });
  return h;
}

std::vector<at::Tensor> scan_bwd(at::Tensor dh, at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B,
                                 std::optional<at::Tensor> delta_bias, bool sp, at::Tensor h, bool deterministic) {
  const auto state = A.scalar_type();
  const bool has_bias = delta_bias.has_value() && delta_bias->defined();
  const int64_t batch = u.size(0), D = u.size(1), L = u.size(2), N = A.size(1), G = B.size(1);
  const auto so = u.options().dtype(state);
  at::Tensor du = at::full_like(u, NAN), ddelta = at::full_like(delta, NAN);
  at::Tensor dA_rows = at::full({batch, D, N}, NAN, so);
  at::Tensor dbias_rows = has_bias ? at::full({batch, D}, NAN, so) : at::Tensor();
  at::Tensor du_acc, ddt_acc;
  if (N > 1) { du_acc = at::full({batch, D, L}, NAN, so); ddt_acc = at::full({batch, D, L}, NAN, so); }
  at::Tensor dBb = deterministic ? at::full({batch, D, N, L}, NAN, so) : at::zeros({batch, G, N, L}, so);
  DISPATCH(u.scalar_type(), [&] {
    using S = acc_t<scalar_t>;
    auto args = make_scan_args<scalar_t>(u, delta, A, B, delta_bias, sp);
    ScanBwdArgs<scalar_t> out;
    out.dh = dh.const_data_ptr<S>(); out.h = h.const_data_ptr<S>();
    out.du = du.mutable_data_ptr<scalar_t>(); out.ddelta = ddelta.mutable_data_ptr<scalar_t>();
    out.du_acc = N > 1 ? du_acc.mutable_data_ptr<S>() : nullptr;
    out.ddt_acc = N > 1 ? ddt_acc.mutable_data_ptr<S>() : nullptr;
    out.dA_rows = dA_rows.mutable_data_ptr<S>();
    out.dbias_rows = has_bias ? dbias_rows.mutable_data_ptr<S>() : nullptr;
    out.dB = dBb.mutable_data_ptr<S>();
    out.deterministic = deterministic;
    emu::launch(scan_bwd_kernel<scalar_t>, (unsigned)ceil_div(args.rows, kScanWarps), kScanWarps * 32, 0, args, out);
  });
  at::Tensor dB = deterministic ? dBb.view({batch, G, D / G, N, L}).sum(2) : dBb;
  return {du, ddelta, dA_rows.sum(0), dB, has_bias ? dbias_rows.sum(0) : at::Tensor()};
}

template <typename T>
void logits(const NaShape& s, const T* x, const T* y, const T* rpb, T* out) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  const int64_t rect = int64_t{kTile + s.kh - 1} * (kTile + s.kw - 1);
  const size_t smem = (kTilePixels * CC + rect * (CC + 1)) * sizeof(S);
  const unsigned blocks = s.batch_heads * s.tiles;
  switch ((s.kh * s.kw + 31) / 32) {
    case 1: emu::launch(na_logits_kernel<T, 1>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
    case 2: emu::launch(na_logits_kernel<T, 2>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
    case 3: emu::launch(na_logits_kernel<T, 3>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
    case 4: emu::launch(na_logits_kernel<T, 4>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
    case 5: emu::launch(na_logits_kernel<T, 5>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
    default: emu::launch(na_logits_kernel<T, 6>, blocks, kNaThreads, smem, s, x, y, rpb, out); break;
  }
}
template <typename T>
void aggregate(const NaShape& s, const T* a, const T* y, T* out, acc_t<T>* bp) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  const int64_t rect = int64_t{kTile + s.kh - 1} * (kTile + s.kw - 1);
  const size_t smem = (int64_t{kTilePixels} * s.kh * s.kw + rect * (CC + 1)) * sizeof(S);
  emu::launch(na_aggregate_kernel<T>, unsigned(s.batch_heads * s.tiles), kNaThreads, smem, s, a, y, out, bp);
}
template <typename T>
void scatter(const NaShape& s, const T* a, const T* x, T* out) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  const int64_t rect = int64_t{kTile + 2 * s.kh - 2} * (kTile + 2 * s.kw - 2);
  const size_t smem = rect * (CC + 1) * sizeof(S);
  emu::launch(na_scatter_kernel<T>, unsigned(s.batch_heads * s.tiles), kNaThreads, smem, s, a, x, out);
}

at::Tensor qk_fwd(at::Tensor q, at::Tensor k, std::optional<at::Tensor> rpb, int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  NaShape s = make_na_shape(q, kh, kw, dh, dw, "emu");
  at::Tensor attn = at::full({q.size(0), q.size(1), q.size(2), q.size(3), kh * kw}, NAN, q.options());
  DISPATCH(q.scalar_type(), [&] {
    logits<scalar_t>(s, q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                     rpb.has_value() ? rpb->const_data_ptr<scalar_t>() : nullptr, attn.mutable_data_ptr<scalar_t>());
  });
  return attn;
}
std::vector<at::Tensor> qk_bwd(at::Tensor dattn, at::Tensor q, at::Tensor k, bool has_rpb, int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  NaShape s = make_na_shape(q, kh, kw, dh, dw, "emu");
  at::Tensor dq = at::full_like(q, NAN), dk = at::full_like(k, NAN);
  const auto state = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t entries = (2 * kh - 1) * (2 * kw - 1);
  at::Tensor tiles = at::full({q.size(0), q.size(1), s.tiles, entries}, NAN, q.options().dtype(state));
  DISPATCH(q.scalar_type(), [&] {
    aggregate<scalar_t>(s, dattn.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), dq.mutable_data_ptr<scalar_t>(),
                        has_rpb ? tiles.mutable_data_ptr<acc_t<scalar_t>>() : nullptr);
    scatter<scalar_t>(s, dattn.const_data_ptr<scalar_t>(), q.const_data_ptr<scalar_t>(), dk.mutable_data_ptr<scalar_t>());
  });
  at::Tensor drpb = has_rpb ? tiles.sum(at::IntArrayRef{0, 2}).view({q.size(1), 2 * kh - 1, 2 * kw - 1}) : at::Tensor();
  return {dq, dk, drpb};
}
at::Tensor av_fwd(at::Tensor attn, at::Tensor v, int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  NaShape s = make_na_shape(v, kh, kw, dh, dw, "emu");
  at::Tensor out = at::full_like(v, NAN);
  DISPATCH(v.scalar_type(), [&] {
    aggregate<scalar_t>(s, attn.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), nullptr);
  });
  return out;
}
std::vector<at::Tensor> av_bwd(at::Tensor dout, at::Tensor attn, at::Tensor v, int64_t kh, int64_t kw, int64_t dh, int64_t dw) {
  NaShape s = make_na_shape(v, kh, kw, dh, dw, "emu");
  at::Tensor dattn = at::full_like(attn, NAN), dv = at::full_like(v, NAN);
  DISPATCH(v.scalar_type(), [&] {
    logits<scalar_t>(s, dout.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(), nullptr, dattn.mutable_data_ptr<scalar_t>());
    scatter<scalar_t>(s, attn.const_data_ptr<scalar_t>(), dout.const_data_ptr<scalar_t>(), dv.mutable_data_ptr<scalar_t>());
  });
  return {dattn, dv};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scan_fwd", &scan_fwd);
  m.def("scan_bwd", &scan_bwd);
  m.def("qk_fwd", &qk_fwd);
  m.def("qk_bwd", &qk_bwd);
  m.def("av_fwd", &av_fwd);
  m.def("av_bwd", &av_bwd);
}
