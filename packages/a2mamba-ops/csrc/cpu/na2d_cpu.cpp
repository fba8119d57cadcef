// 2-D neighbourhood attention on the CPU (NATTEN 0.17 semantics, spec 5.2).
//
// Every op is one of three loops over the per-axis tables of neighbourhood.h:
//   - neighbourhood_dot:     out[p, t] = <x[p], y[key(p, t)]> (+ bias)   qk forward, av backward (dattn)
//   - neighbourhood_sum:     out[p]    = sum_t w[p, t] y[key(p, t)]     av forward, qk backward (dq)
//   - inverse_sum:           out[k]    = sum_{p, t: key(p, t) = k} w[p, t] x[p]
//                                                                     qk backward (dk), av backward (dv)
// Each output pixel belongs to exactly one task, so results do not depend on
// the thread count. bfloat16/float16 run in float32 and round once at the end.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "cpu/neighbourhood.h"
#include "cpu/vector_loops.h"
#include "ops.h"

namespace a2mamba::cpu {
namespace {

// Problem sizes of one call; a pixel p = ((bh * H) + i) * W + j with bh = batch * heads + head.
struct Geometry {
  int64_t batch_heads, heads, H, W, dim;
  const AxisWindows& rows;
  const AxisWindows& cols;
  int64_t slots() const { return rows.kernel * cols.kernel; }
};

// Rows per parallel task so that each task does at least ~GRAIN_SIZE multiply-adds.
int64_t grain_rows(const Geometry& g) {
  const int64_t per_row = std::max<int64_t>(1, g.W * g.slots() * g.dim);
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_row);
}

template <typename T>
void neighbourhood_dot(const Geometry& g, const T* x, const T* y, const T* rpb, T* out) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W;
  const int64_t bias_w = 2 * kw - 1, bias_size = (2 * kh - 1) * bias_w;
  at::parallel_for(0, g.batch_heads * g.H, grain_rows(g), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bh = row / g.H, i = row % g.H;
      const T* y_plane = y + bh * g.H * W * C;
      for (int64_t j = 0; j < W; ++j) {
        const T* xq = x + (row * W + j) * C;
        T* o = out + (row * W + j) * g.slots();
        for (int64_t th = 0; th < kh; ++th) {
          const T* y_row = y_plane + g.rows.key(i, th) * W * C;
          for (int64_t tw = 0; tw < kw; ++tw) {
            o[th * kw + tw] = dot(xq, y_row + g.cols.key(j, tw) * C, C);
          }
          if (rpb != nullptr) {
            const T* bias = rpb + (bh % g.heads) * bias_size + (g.rows.bias_start[i] + th) * bias_w +
                            g.cols.bias_start[j];
            for (int64_t tw = 0; tw < kw; ++tw) {
              o[th * kw + tw] += bias[tw];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void neighbourhood_sum(const Geometry& g, const T* w, const T* y, T* out) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W;
  at::parallel_for(0, g.batch_heads * g.H, grain_rows(g), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bh = row / g.H, i = row % g.H;
      const T* y_plane = y + bh * g.H * W * C;
      for (int64_t j = 0; j < W; ++j) {
        const T* wq = w + (row * W + j) * g.slots();
        T* o = out + (row * W + j) * C;
        std::fill(o, o + C, T(0));
        for (int64_t th = 0; th < kh; ++th) {
          const T* y_row = y_plane + g.rows.key(i, th) * W * C;
          for (int64_t tw = 0; tw < kw; ++tw) {
            axpy(wq[th * kw + tw], y_row + g.cols.key(j, tw) * C, o, C);
          }
        }
      }
    }
  });
}

template <typename T>
void inverse_sum(const Geometry& g, const T* w, const T* x, T* out) {
  const int64_t kw = g.cols.kernel, C = g.dim, W = g.W;
  at::parallel_for(0, g.batch_heads * g.H, grain_rows(g), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bh = row / g.H, a = row % g.H;
      const int64_t plane = bh * g.H * W;
      for (int64_t b = 0; b < W; ++b) {
        T* o = out + (row * W + b) * C;
        std::fill(o, o + C, T(0));
        for (int64_t pr = g.rows.inverse_offset[a]; pr < g.rows.inverse_offset[a + 1]; ++pr) {
          const int64_t i = g.rows.inverse_query[pr], ti = g.rows.inverse_slot[pr];
          for (int64_t pc = g.cols.inverse_offset[b]; pc < g.cols.inverse_offset[b + 1]; ++pc) {
            const int64_t p = plane + i * W + g.cols.inverse_query[pc];
            axpy(w[p * g.slots() + ti * kw + g.cols.inverse_slot[pc]], x + p * C, o, C);
          }
        }
      }
    }
  });
}

// drpb[head, bias_row(i) + th, bias_col(j) + tw] = sum over batch, i, j of dattn[.., i, j, th*kw + tw].
// First a partial table per (head, query row), then a sum over rows in a fixed order (double accumulators).
template <typename T>
void bias_gradient(const Geometry& g, const T* dattn, T* drpb) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, W = g.W, H = g.H;
  const int64_t bias_w = 2 * kw - 1, bias_h = 2 * kh - 1;
  const int64_t batch = g.batch_heads / g.heads;
  std::vector<double> partial(g.heads * H * kh * bias_w, 0.0);
  at::parallel_for(0, g.heads * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t head = task / H, i = task % H;
      double* p = partial.data() + task * kh * bias_w;
      for (int64_t b = 0; b < batch; ++b) {
        const T* d_row = dattn + ((b * g.heads + head) * H + i) * W * g.slots();
        for (int64_t j = 0; j < W; ++j) {
          const T* d = d_row + j * g.slots();
          double* pj = p + g.cols.bias_start[j];
          for (int64_t th = 0; th < kh; ++th) {
            for (int64_t tw = 0; tw < kw; ++tw) {
              pj[th * bias_w + tw] += static_cast<double>(d[th * kw + tw]);
            }
          }
        }
      }
    }
  });
  at::parallel_for(0, g.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t head = begin; head < end; ++head) {
      std::vector<double> table(bias_h * bias_w, 0.0);
      for (int64_t i = 0; i < H; ++i) {
        const double* p = partial.data() + (head * H + i) * kh * bias_w;
        double* t = table.data() + g.rows.bias_start[i] * bias_w;
        for (int64_t e = 0; e < kh * bias_w; ++e) {
          t[e] += p[e];
        }
      }
      for (int64_t e = 0; e < bias_h * bias_w; ++e) {
        drpb[head * bias_h * bias_w + e] = static_cast<T>(table[e]);
      }
    }
  });
}

at::ScalarType compute_type(const at::Tensor& t) {
  const auto type = t.scalar_type();
  TORCH_CHECK(at::isFloatingType(type), "na2d: expected a floating-point tensor, got ", type);
  return (type == at::kDouble) ? at::kDouble : at::kFloat;
}

// Contiguous, in the kernels' compute precision (a no-op for contiguous float32/float64).
at::Tensor prepared(const at::Tensor& t, at::ScalarType type) { return t.to(type).contiguous(); }

void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 5, "na2d: ", name, " must be (batch, heads, H, W, dim), got ", t.sizes());
}

void check_attn(const at::Tensor& attn, const at::Tensor& map, int64_t slots, const char* name) {
  TORCH_CHECK(attn.dim() == 5 && attn.sizes().slice(0, 4) == map.sizes().slice(0, 4) && attn.size(4) == slots,
              "na2d: ", name, " must be (batch, heads, H, W, ", slots, "), got ", attn.sizes());
}

}  // namespace

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  check_map(q, "q");
  TORCH_CHECK(k.sizes() == q.sizes(), "na2d_qk: k must have the shape of q ", q.sizes(), ", got ", k.sizes());
  const bool has_rpb = rpb.has_value() && rpb->defined();
  if (has_rpb) {
    TORCH_CHECK(rpb->dim() == 3 && rpb->size(0) == q.size(1) && rpb->size(1) == 2 * kernel_h - 1 &&
                    rpb->size(2) == 2 * kernel_w - 1,
                "na2d_qk: rpb must be (heads, 2*kh-1, 2*kw-1), got ", rpb->sizes());
  }
  const AxisWindows rows(q.size(2), kernel_h, dilation_h), cols(q.size(3), kernel_w, dilation_w);
  const Geometry g{q.size(0) * q.size(1), q.size(1), q.size(2), q.size(3), q.size(4), rows, cols};
  const auto type = compute_type(q);
  const at::Tensor qc = prepared(q, type), kc = prepared(k, type);
  const at::Tensor bc = has_rpb ? prepared(*rpb, type) : at::Tensor();
  at::Tensor attn = at::empty({q.size(0), q.size(1), q.size(2), q.size(3), g.slots()}, qc.options());
  AT_DISPATCH_FLOATING_TYPES(type, "na2d_qk_fwd", [&] {
    neighbourhood_dot<scalar_t>(g, qc.const_data_ptr<scalar_t>(), kc.const_data_ptr<scalar_t>(),
                                has_rpb ? bc.const_data_ptr<scalar_t>() : nullptr, attn.mutable_data_ptr<scalar_t>());
  });
  return attn.to(q.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w) {
  check_map(q, "q");
  TORCH_CHECK(k.sizes() == q.sizes(), "na2d_qk: k must have the shape of q ", q.sizes(), ", got ", k.sizes());
  check_attn(dattn, q, kernel_h * kernel_w, "dattn");
  const AxisWindows rows(q.size(2), kernel_h, dilation_h), cols(q.size(3), kernel_w, dilation_w);
  const Geometry g{q.size(0) * q.size(1), q.size(1), q.size(2), q.size(3), q.size(4), rows, cols};
  const auto type = compute_type(q);
  const at::Tensor qc = prepared(q, type), kc = prepared(k, type), dc = prepared(dattn, type);
  at::Tensor dq = at::empty_like(qc), dk = at::empty_like(kc);
  at::Tensor drpb = has_rpb ? at::empty({q.size(1), 2 * kernel_h - 1, 2 * kernel_w - 1}, qc.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(type, "na2d_qk_bwd", [&] {
    const scalar_t* d = dc.const_data_ptr<scalar_t>();
    neighbourhood_sum<scalar_t>(g, d, kc.const_data_ptr<scalar_t>(), dq.mutable_data_ptr<scalar_t>());
    inverse_sum<scalar_t>(g, d, qc.const_data_ptr<scalar_t>(), dk.mutable_data_ptr<scalar_t>());
    if (has_rpb) {
      bias_gradient<scalar_t>(g, d, drpb.mutable_data_ptr<scalar_t>());
    }
  });
  const auto out_type = q.scalar_type();
  return {dq.to(out_type), dk.to(out_type), has_rpb ? drpb.to(out_type) : drpb};
}

at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w) {
  check_map(v, "v");
  check_attn(attn, v, kernel_h * kernel_w, "attn");
  const AxisWindows rows(v.size(2), kernel_h, dilation_h), cols(v.size(3), kernel_w, dilation_w);
  const Geometry g{v.size(0) * v.size(1), v.size(1), v.size(2), v.size(3), v.size(4), rows, cols};
  const auto type = compute_type(v);
  const at::Tensor ac = prepared(attn, type), vc = prepared(v, type);
  at::Tensor out = at::empty_like(vc);
  AT_DISPATCH_FLOATING_TYPES(type, "na2d_av_fwd", [&] {
    neighbourhood_sum<scalar_t>(g, ac.const_data_ptr<scalar_t>(), vc.const_data_ptr<scalar_t>(),
                                out.mutable_data_ptr<scalar_t>());
  });
  return out.to(v.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v,
                                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h,
                                               int64_t dilation_w) {
  check_map(v, "v");
  TORCH_CHECK(dout.sizes() == v.sizes(), "na2d_av: dout must have the shape of v ", v.sizes(), ", got ",
              dout.sizes());
  check_attn(attn, v, kernel_h * kernel_w, "attn");
  const AxisWindows rows(v.size(2), kernel_h, dilation_h), cols(v.size(3), kernel_w, dilation_w);
  const Geometry g{v.size(0) * v.size(1), v.size(1), v.size(2), v.size(3), v.size(4), rows, cols};
  const auto type = compute_type(v);
  const at::Tensor dc = prepared(dout, type), ac = prepared(attn, type), vc = prepared(v, type);
  at::Tensor dattn = at::empty(ac.sizes(), ac.options()), dv = at::empty_like(vc);
  AT_DISPATCH_FLOATING_TYPES(type, "na2d_av_bwd", [&] {
    const scalar_t* d = dc.const_data_ptr<scalar_t>();
    neighbourhood_dot<scalar_t>(g, d, vc.const_data_ptr<scalar_t>(), nullptr, dattn.mutable_data_ptr<scalar_t>());
    inverse_sum<scalar_t>(g, ac.const_data_ptr<scalar_t>(), d, dv.mutable_data_ptr<scalar_t>());
  });
  return {dattn.to(attn.scalar_type()), dv.to(v.scalar_type())};
}

}  // namespace a2mamba::cpu
