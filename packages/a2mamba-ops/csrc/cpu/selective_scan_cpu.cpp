// Selective scan returning every hidden state, on the CPU (spec section 6).
//
//   dt_t = softplus(delta_t + bias)  (PyTorch's: linear above 20),   h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t
//
// One task per (batch, channel): the recurrence is sequential in t, so the
// channels are the parallel axis. The backward runs the adjoint recurrence
//   g_t = dh_t + exp(dt_{t+1} A) g_{t+1}
// in reverse time using the saved h for h_{t-1}. Gradients that sum over tasks
// (dA and delta_bias over the batch, dB over the channels of a group) are first
// written per task and then reduced in a fixed order, so results are
// deterministic and independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "cpu/fast_math.h"
#include "ops.h"

namespace a2mamba::cpu {
namespace {

struct ScanShape {
  int64_t batch, D, N, L, G;
  int64_t group_of(int64_t d) const { return d / (D / G); }
};

// dt_t for one (batch, channel) row and d(dt_t)/d(delta_t). Branch-free, so the
// float32 loop vectorises (fast_math.h).
template <typename T>
void discretise(const T* __restrict delta, T bias, bool softplus, int64_t L, T* __restrict dt, T* __restrict slope) {
  if (!softplus) {
    for (int64_t t = 0; t < L; ++t) {
      dt[t] = delta[t] + bias;
      slope[t] = T(1);
    }
    return;
  }
  for (int64_t t = 0; t < L; ++t) {
    softplus_with_slope<T>(delta[t] + bias, dt[t], slope[t]);
  }
}

// Sum in double with four partial sums (a fixed order, and no serial dependency chain).
template <typename T>
double sum_as_double(const T* x, int64_t n) {
  double partial[4] = {0, 0, 0, 0};
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) {
    for (int l = 0; l < 4; ++l) {
      partial[l] += static_cast<double>(x[t + l]);
    }
  }
  for (; t < n; ++t) {
    partial[0] += static_cast<double>(x[t]);
  }
  return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

// Scratch rows of one task, reused across its (batch, channel) rows.
template <typename T>
struct RowBuffers {
  std::vector<T> dt, slope, dtu, decay, g, ddt, work;
  explicit RowBuffers(int64_t L) : dt(L), slope(L), dtu(L), decay(L), g(L), ddt(L), work(L) {}
};

template <typename T>
void scan_forward(const ScanShape& s, const T* u, const T* delta, const T* A, const T* B, const T* bias, bool softplus,
                  T* h) {
  const int64_t L = s.L, N = s.N;
  at::parallel_for(0, s.batch * s.D, 1, [&](int64_t begin, int64_t end) {
    RowBuffers<T> buf(L);
    T* __restrict dt = buf.dt.data();
    T* __restrict dtu = buf.dtu.data();
    T* __restrict decay = buf.decay.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.D, d = row % s.D;
      const T* u_row = u + row * L;
      discretise(delta + row * L, bias != nullptr ? bias[d] : T(0), softplus, L, dt, buf.slope.data());
      for (int64_t t = 0; t < L; ++t) {
        dtu[t] = dt[t] * u_row[t];
      }
      for (int64_t n = 0; n < N; ++n) {
        const T a = A[d * N + n];
        const T* B_row = B + ((b * s.G + s.group_of(d)) * N + n) * L;
        T* h_row = h + (row * N + n) * L;
        // Everything but the recurrence itself is independent per step: vectorised loops first,
        // then the serial chain h_t = decay_t h_{t-1} + x_t, written in place.
        for (int64_t t = 0; t < L; ++t) {
          decay[t] = exp_fast<T>(dt[t] * a);
          h_row[t] = dtu[t] * B_row[t];
        }
        T state = 0;
        for (int64_t t = 0; t < L; ++t) {
          state = decay[t] * state + h_row[t];
          h_row[t] = state;
        }
      }
    }
  });
}

// One (batch, channel, state) row of the backward: accumulates into ddt and du_row, writes this
// channel's dB contribution, returns the row's dA. A function of its own so that every pointer
// is __restrict and its loops vectorise.
template <typename T>
double backward_state_row(int64_t L, T a, const T* __restrict dt, const T* __restrict dtu, const T* __restrict u_row,
                          const T* __restrict B_row, const T* __restrict h_row, const T* __restrict dh_row,
                          T* __restrict decay, T* __restrict g, T* __restrict work, T* __restrict ddt,
                          T* __restrict du_row, T* __restrict dB_row) {
  for (int64_t t = 0; t < L; ++t) {
    decay[t] = exp_fast<T>(dt[t] * a);
  }
  // The adjoint chain g_t = dh_t + decay_{t+1} g_{t+1}: the only serial part.
  T carry = 0;
  for (int64_t t = L - 1; t >= 0; --t) {
    carry = dh_row[t] + (t + 1 < L ? decay[t + 1] : T(0)) * carry;
    g[t] = carry;
  }
  // With h_{-1} = 0 step 0 has no exponent gradient; work holds d(loss)/d(exponent) * dt.
  work[0] = T(0);
  ddt[0] += g[0] * B_row[0] * u_row[0];
  for (int64_t t = 1; t < L; ++t) {
    const T d_exponent = g[t] * h_row[t - 1] * decay[t];  // gradient of the exponent dt_t * a
    work[t] = d_exponent * dt[t];
    ddt[t] += d_exponent * a + g[t] * B_row[t] * u_row[t];
  }
  for (int64_t t = 0; t < L; ++t) {
    du_row[t] += g[t] * dt[t] * B_row[t];
    dB_row[t] = g[t] * dtu[t];
  }
  return sum_as_double(work, L);
}

// Per (batch, channel) row: du, ddelta; per-row partials of dA (batch, D, N) and the bias gradient (batch, D);
// dB contributions per channel (batch, D, N, L), summed over each group afterwards.
template <typename T>
void scan_backward_rows(const ScanShape& s, const T* dh, const T* u, const T* delta, const T* A, const T* B,
                        const T* bias, bool softplus, const T* h, T* du, T* ddelta, double* dA_rows,
                        double* dbias_rows, T* dB_channels) {
  const int64_t L = s.L, N = s.N;
  at::parallel_for(0, s.batch * s.D, 1, [&](int64_t begin, int64_t end) {
    RowBuffers<T> buf(L);
    T* __restrict dt = buf.dt.data();
    T* __restrict slope = buf.slope.data();
    T* __restrict dtu = buf.dtu.data();
    T* __restrict decay = buf.decay.data();
    T* __restrict g = buf.g.data();
    T* __restrict ddt = buf.ddt.data();
    T* __restrict work = buf.work.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.D, d = row % s.D;
      const T* u_row = u + row * L;
      discretise(delta + row * L, bias != nullptr ? bias[d] : T(0), softplus, L, dt, slope);
      for (int64_t t = 0; t < L; ++t) {
        dtu[t] = dt[t] * u_row[t];
      }
      std::fill(ddt, ddt + L, T(0));
      T* du_row = du + row * L;
      std::fill(du_row, du_row + L, T(0));
      for (int64_t n = 0; n < N; ++n) {
        const T* B_row = B + ((b * s.G + s.group_of(d)) * N + n) * L;
        const int64_t offset = (row * N + n) * L;
        dA_rows[row * N + n] = backward_state_row<T>(L, A[d * N + n], dt, dtu, u_row, B_row, h + offset, dh + offset,
                                                     decay, g, work, ddt, du_row, dB_channels + offset);
      }
      T* ddelta_row = ddelta + row * L;
      for (int64_t t = 0; t < L; ++t) {
        ddelta_row[t] = ddt[t] * slope[t];
      }
      dbias_rows[row] = sum_as_double(ddelta_row, L);
    }
  });
}

// dB[b, g, n, :] = sum over the channels d of group g of dB_channels[b, d, n, :], in ascending d.
template <typename T>
void sum_groups(const ScanShape& s, const T* dB_channels, T* dB) {
  const int64_t per_group = s.D / s.G, L = s.L, N = s.N;
  at::parallel_for(0, s.batch * s.G * N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task % N, bg = task / N;
      const int64_t b = bg / s.G, grp = bg % s.G;
      T* out = dB + task * L;
      std::fill(out, out + L, T(0));
      for (int64_t d = grp * per_group; d < (grp + 1) * per_group; ++d) {
        const T* in = dB_channels + ((b * s.D + d) * N + n) * L;
        for (int64_t t = 0; t < L; ++t) {
          out[t] += in[t];
        }
      }
    }
  });
}

ScanShape check_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                     const std::optional<at::Tensor>& delta_bias) {
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes(), "selective_scan: u and delta must be (batch, D, L), got ",
              u.sizes(), " and ", delta.sizes());
  const int64_t batch = u.size(0), D = u.size(1), L = u.size(2);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == D, "selective_scan: A must be (D, N) with D = ", D, ", got ", A.sizes());
  const int64_t N = A.size(1);
  TORCH_CHECK(B.dim() == 4 && B.size(0) == batch && B.size(1) > 0 && D % B.size(1) == 0 && B.size(2) == N &&
                  B.size(3) == L,
              "selective_scan: B must be (batch, G, N, L) with G dividing D, got ", B.sizes());
  const auto type = u.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble, "selective_scan: CPU kernels take float32 or float64, got ",
              type);
  TORCH_CHECK(delta.scalar_type() == type && A.scalar_type() == type && B.scalar_type() == type,
              "selective_scan: u, delta, A and B must share one dtype");
  TORCH_CHECK(u.is_contiguous() && delta.is_contiguous() && A.is_contiguous() && B.is_contiguous(),
              "selective_scan: inputs must be contiguous");
  if (delta_bias.has_value() && delta_bias->defined()) {
    TORCH_CHECK(delta_bias->dim() == 1 && delta_bias->size(0) == D && delta_bias->scalar_type() == type &&
                    delta_bias->is_contiguous(),
                "selective_scan: delta_bias must be a contiguous (D,) tensor of u's dtype, got ", delta_bias->sizes());
  }
  return {batch, D, N, L, B.size(1)};
}

template <typename T>
const T* bias_ptr(const std::optional<at::Tensor>& delta_bias) {
  return (delta_bias.has_value() && delta_bias->defined()) ? delta_bias->const_data_ptr<T>() : nullptr;
}

}  // namespace

at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus) {
  const ScanShape s = check_scan(u, delta, A, B, delta_bias);
  at::Tensor h = at::empty({s.batch, s.D, s.N, s.L}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_state_fwd", [&] {
    scan_forward<scalar_t>(s, u.const_data_ptr<scalar_t>(), delta.const_data_ptr<scalar_t>(),
                           A.const_data_ptr<scalar_t>(), B.const_data_ptr<scalar_t>(), bias_ptr<scalar_t>(delta_bias),
                           delta_softplus, h.mutable_data_ptr<scalar_t>());
  });
  return h;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h) {
  const ScanShape s = check_scan(u, delta, A, B, delta_bias);
  const std::vector<int64_t> state_shape{s.batch, s.D, s.N, s.L};
  TORCH_CHECK(h.sizes() == state_shape && dh.sizes() == state_shape, "selective_scan: h and dh must be ",
              state_shape, ", got ", h.sizes(), " and ", dh.sizes());
  TORCH_CHECK(h.scalar_type() == u.scalar_type() && dh.scalar_type() == u.scalar_type() && h.is_contiguous() &&
                  dh.is_contiguous(),
              "selective_scan: h and dh must be contiguous and of u's dtype");
  const bool has_bias = delta_bias.has_value() && delta_bias->defined();

  at::Tensor du = at::empty_like(u), ddelta = at::empty_like(delta), dB = at::empty_like(B);
  const auto doubles = u.options().dtype(at::kDouble);
  at::Tensor dA_rows = at::empty({s.batch, s.D, s.N}, doubles);
  at::Tensor dbias_rows = at::empty({s.batch, s.D}, doubles);
  // With one channel per group the per-channel dB already is dB.
  const bool grouped = s.G != s.D;
  at::Tensor dB_channels = grouped ? at::empty(state_shape, u.options()) : dB;

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_state_bwd", [&] {
    scan_backward_rows<scalar_t>(s, dh.const_data_ptr<scalar_t>(), u.const_data_ptr<scalar_t>(),
                                 delta.const_data_ptr<scalar_t>(), A.const_data_ptr<scalar_t>(),
                                 B.const_data_ptr<scalar_t>(), bias_ptr<scalar_t>(delta_bias), delta_softplus,
                                 h.const_data_ptr<scalar_t>(), du.mutable_data_ptr<scalar_t>(),
                                 ddelta.mutable_data_ptr<scalar_t>(), dA_rows.mutable_data_ptr<double>(),
                                 dbias_rows.mutable_data_ptr<double>(), dB_channels.mutable_data_ptr<scalar_t>());
    if (grouped) {
      sum_groups<scalar_t>(s, dB_channels.const_data_ptr<scalar_t>(), dB.mutable_data_ptr<scalar_t>());
    }
  });
  // Sums over the batch of small per-row partials: a fixed-order reduction in double.
  at::Tensor dA = dA_rows.sum(0).to(A.scalar_type());
  at::Tensor dbias = has_bias ? dbias_rows.sum(0).to(delta_bias->scalar_type()) : at::Tensor();
  return {du, ddelta, dA, dB, dbias};
}

}  // namespace a2mamba::cpu
