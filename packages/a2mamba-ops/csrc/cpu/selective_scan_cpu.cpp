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

#include <cmath>
#include <vector>

#include "ops.h"

namespace a2mamba::cpu {
namespace {

constexpr double kSoftplusThreshold = 20.0;  // torch.nn.functional.softplus's default

struct ScanShape {
  int64_t batch, D, N, L, G;
  int64_t group_of(int64_t d) const { return d / (D / G); }
};

// dt_t for one (batch, channel) row, and d(dt_t)/d(delta_t) when `slope` is given.
template <typename T>
void discretise(const T* delta, T bias, bool softplus, int64_t L, T* dt, T* slope) {
  for (int64_t t = 0; t < L; ++t) {
    const T z = delta[t] + bias;
    if (!softplus) {
      dt[t] = z;
      if (slope != nullptr) slope[t] = T(1);
    } else if (z > T(kSoftplusThreshold)) {
      dt[t] = z;
      if (slope != nullptr) slope[t] = T(1);
    } else {
      const T e = std::exp(z);
      dt[t] = std::log1p(e);
      if (slope != nullptr) slope[t] = e / (e + T(1));
    }
  }
}

template <typename T>
void scan_forward(const ScanShape& s, const T* u, const T* delta, const T* A, const T* B, const T* bias, bool softplus,
                  T* h) {
  const int64_t L = s.L, N = s.N;
  at::parallel_for(0, s.batch * s.D, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dt(L), dtu(L);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.D, d = row % s.D;
      const T* u_row = u + row * L;
      discretise(delta + row * L, bias != nullptr ? bias[d] : T(0), softplus, L, dt.data(), static_cast<T*>(nullptr));
      for (int64_t t = 0; t < L; ++t) {
        dtu[t] = dt[t] * u_row[t];
      }
      for (int64_t n = 0; n < N; ++n) {
        const T a = A[d * N + n];
        const T* B_row = B + ((b * s.G + s.group_of(d)) * N + n) * L;
        T* h_row = h + (row * N + n) * L;
        T state = 0;
        for (int64_t t = 0; t < L; ++t) {
          state = std::exp(dt[t] * a) * state + dtu[t] * B_row[t];
          h_row[t] = state;
        }
      }
    }
  });
}

// Per (batch, channel) row: du, ddelta; per-row partials of dA (batch, D, N) and the bias gradient (batch, D);
// dB contributions per channel (batch, D, N, L), summed over each group afterwards.
template <typename T>
void scan_backward_rows(const ScanShape& s, const T* dh, const T* u, const T* delta, const T* A, const T* B,
                        const T* bias, bool softplus, const T* h, T* du, T* ddelta, double* dA_rows,
                        double* dbias_rows, T* dB_channels) {
  const int64_t L = s.L, N = s.N;
  at::parallel_for(0, s.batch * s.D, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dt(L), slope(L), dtu(L), ddt(L);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.D, d = row % s.D;
      const T* u_row = u + row * L;
      discretise(delta + row * L, bias != nullptr ? bias[d] : T(0), softplus, L, dt.data(), slope.data());
      for (int64_t t = 0; t < L; ++t) {
        dtu[t] = dt[t] * u_row[t];
      }
      std::fill(ddt.begin(), ddt.end(), T(0));
      T* du_row = du + row * L;
      std::fill(du_row, du_row + L, T(0));
      for (int64_t n = 0; n < N; ++n) {
        const T a = A[d * N + n];
        const T* B_row = B + ((b * s.G + s.group_of(d)) * N + n) * L;
        const int64_t offset = (row * N + n) * L;
        const T* h_row = h + offset;
        const T* dh_row = dh + offset;
        T* dB_row = dB_channels + offset;
        T g = 0;               // total gradient of h_t
        T decay_next = 0;      // exp(dt_{t+1} a)
        double dA_sum = 0;
        for (int64_t t = L - 1; t >= 0; --t) {
          g = dh_row[t] + decay_next * g;
          const T decay = std::exp(dt[t] * a);
          const T h_prev = t > 0 ? h_row[t - 1] : T(0);
          const T d_exponent = g * h_prev * decay;  // gradient of the exponent dt_t * a
          dA_sum += static_cast<double>(d_exponent * dt[t]);
          ddt[t] += d_exponent * a + g * B_row[t] * u_row[t];
          du_row[t] += g * dt[t] * B_row[t];
          dB_row[t] = g * dtu[t];
          decay_next = decay;
        }
        dA_rows[row * N + n] = dA_sum;
      }
      T* ddelta_row = ddelta + row * L;
      double bias_sum = 0;
      for (int64_t t = 0; t < L; ++t) {
        ddelta_row[t] = ddt[t] * slope[t];
        bias_sum += static_cast<double>(ddelta_row[t]);
      }
      dbias_rows[row] = bias_sum;
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
