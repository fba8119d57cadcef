// Selective scan returning every hidden state, on the CPU (spec section 6).
//
//   dt_t = softplus(delta_t + bias)  (PyTorch's: linear above 20),   h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t
//
// The recurrence is sequential in t, so the (batch, channel) rows are the
// parallel axis: each task takes blocks of rows and advances their
// recurrences together, hiding the latency of each step. The backward runs the adjoint recurrence
//   g_t = dh_t + exp(dt_{t+1} A) g_{t+1}
// in reverse time using the saved h for h_{t-1}. Gradients that sum over tasks
// (dA and delta_bias over the batch, dB over the channels of a group) are first
// written per task and then reduced in a fixed order, so results are
// deterministic and independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "cpu/fast_math.h"
#include "cpu/parallel.h"

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {
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

// Rows interleaved by one task: the recurrences of kBlockRows independent (batch, channel) rows advance
// together, so the latency of one step (a multiply-add) is hidden behind the other rows' steps.
constexpr int64_t kBlockRows = 8;

// Scratch of one task: kBlockRows rows of L steps per quantity.
template <typename T>
struct BlockBuffers {
  int64_t L;
  std::unique_ptr<T[]> storage;  // left uninitialised: every row is written before it is read
  BlockBuffers(int64_t L_, int count) : L(L_), storage(new T[static_cast<size_t>(count * kBlockRows * L_)]) {}
  // Row r of quantity q.
  T* row(int q, int64_t r) { return storage.get() + (q * kBlockRows + r) * L; }
};

// body(first, count) for the (batch * D) rows in blocks of up to kBlockRows, shared out by parallel_blocks.
// A step of one state costs some 16 multiply-adds' time (the exp and softplus).
template <typename F>
void for_each_block(const ScanShape& s, const F& body) {
  const int64_t rows = s.batch * s.D;
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  parallel_blocks(blocks, 1, kBlockRows * s.L * s.N * 16, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * kBlockRows;
      body(first, std::min(kBlockRows, rows - first));
    }
  });
}

// Steps per chunk of the interleaved recurrences: the chunk of every row of a block sits in one small
// scratch array (L1-resident), at offsets the compiler knows, so a step is two loads, a multiply-add
// and a store, with no per-row pointer to keep in a register.
constexpr int64_t kChunk = 64;

// For `count` rows r of a chunk of `len` steps: state_r = a[r][i] * state_r + x[r][i], written over
// x[r][i], in increasing i (or decreasing, for the adjoint). a and x are (kBlockRows, kChunk) arrays.
template <typename T, bool kReverse>
void chain_chunk(int64_t count, int64_t len, const T* __restrict a, T* __restrict x, T* __restrict state) {
  auto step = [&](int64_t i, auto rows) {
    for (int64_t r = 0; r < rows; ++r) {
      state[r] = a[r * kChunk + i] * state[r] + x[r * kChunk + i];
      x[r * kChunk + i] = state[r];
    }
  };
  if (count == kBlockRows) {
    // A fixed row count: the states live in registers and the rows' steps overlap.
    for (int64_t k = 0; k < len; ++k) {
      step(kReverse ? len - 1 - k : k, std::integral_constant<int64_t, kBlockRows>{});
    }
  } else {
    for (int64_t k = 0; k < len; ++k) {
      step(kReverse ? len - 1 - k : k, count);
    }
  }
}

template <typename T>
void exp_scaled(const T* __restrict dt, T a, int64_t L, T* __restrict out) {
  for (int64_t t = 0; t < L; ++t) {
    out[t] = exp_fast<T>(dt[t] * a);
  }
}

template <typename T>
void multiply(const T* __restrict x, const T* __restrict y, int64_t L, T* __restrict out) {
  for (int64_t t = 0; t < L; ++t) {
    out[t] = x[t] * y[t];
  }
}

// The first quantities of every block's buffers: dt, d(dt)/d(delta) and dt * u per row.
enum { kDt, kSlope, kDtu, kStepCount };

template <typename T>
void discretise_block(const ScanShape& s, int64_t first, int64_t count, const T* u, const T* delta, const T* bias,
                      bool softplus, BlockBuffers<T>& buf) {
  for (int64_t r = 0; r < count; ++r) {
    const int64_t row = first + r, d = row % s.D;
    discretise(delta + row * s.L, bias != nullptr ? bias[d] : T(0), softplus, s.L, buf.row(kDt, r),
               buf.row(kSlope, r));
    multiply(buf.row(kDt, r), u + row * s.L, s.L, buf.row(kDtu, r));
  }
}

template <typename T>
void scan_forward(const ScanShape& s, const T* u, const T* delta, const T* A, const T* B, const T* bias, bool softplus,
                  T* h) {
  const int64_t L = s.L, N = s.N;
  for_each_block(s, [&](int64_t first, int64_t count) {
    BlockBuffers<T> buf(L, kStepCount);
    discretise_block(s, first, count, u, delta, bias, softplus, buf);
    alignas(64) T decay[kBlockRows * kChunk];
    alignas(64) T x[kBlockRows * kChunk];
    for (int64_t n = 0; n < N; ++n) {
      T state[kBlockRows] = {};
      for (int64_t t0 = 0; t0 < L; t0 += kChunk) {
        const int64_t len = std::min(kChunk, L - t0);
        // Everything but the recurrence is independent per step: vectorised loops per row first.
        for (int64_t r = 0; r < count; ++r) {
          const int64_t row = first + r, b = row / s.D, d = row % s.D;
          exp_scaled(buf.row(kDt, r) + t0, A[d * N + n], len, decay + r * kChunk);
          multiply(buf.row(kDtu, r) + t0, B + ((b * s.G + s.group_of(d)) * N + n) * L + t0, len, x + r * kChunk);
        }
        chain_chunk<T, false>(count, len, decay, x, state);
        for (int64_t r = 0; r < count; ++r) {
          std::copy_n(x + r * kChunk, len, h + ((first + r) * N + n) * L + t0);
        }
      }
    }
  });
}

// The per-step gradients of one (batch, channel, state) row once its adjoint g is known: accumulates
// into ddt and du_row, writes this channel's dB contribution, returns the row's dA. A function of its
// own so that every pointer is __restrict and its loops vectorise.
template <typename T>
double backward_state_row(int64_t L, T a, const T* __restrict dt, const T* __restrict dtu, const T* __restrict u_row,
                          const T* __restrict B_row, const T* __restrict h_row, const T* __restrict decay,
                          const T* __restrict g, T* __restrict work, T* __restrict ddt, T* __restrict du_row,
                          T* __restrict dB_row) {
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
  enum { kDdt = kStepCount, kDecay, kG, kWork, kCount };
  for_each_block(s, [&](int64_t first, int64_t count) {
    BlockBuffers<T> buf(L, kCount);
    discretise_block(s, first, count, u, delta, bias, softplus, buf);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t row = first + r;
      std::fill(buf.row(kDdt, r), buf.row(kDdt, r) + L, T(0));
      std::fill(du + row * L, du + (row + 1) * L, T(0));
    }
    alignas(64) T next_decay[kBlockRows * kChunk];
    alignas(64) T carry[kBlockRows * kChunk];
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t r = 0; r < count; ++r) {
        const int64_t d = (first + r) % s.D;
        exp_scaled(buf.row(kDt, r), A[d * N + n], L, buf.row(kDecay, r));
      }
      // The adjoint chain g_t = dh_t + decay_{t+1} g_{t+1}, the only serial part, chunk by chunk from the end.
      T state[kBlockRows] = {};
      for (int64_t t1 = L; t1 > 0; t1 -= kChunk) {
        const int64_t t0 = std::max<int64_t>(0, t1 - kChunk), len = t1 - t0;
        for (int64_t r = 0; r < count; ++r) {
          const T* decay = buf.row(kDecay, r);
          T* a = next_decay + r * kChunk;
          std::copy(decay + t0 + 1, decay + std::min(t1 + 1, L), a);
          if (t1 == L) {
            a[len - 1] = T(0);  // no step after the last
          }
          std::copy_n(dh + ((first + r) * N + n) * L + t0, len, carry + r * kChunk);
        }
        chain_chunk<T, true>(count, len, next_decay, carry, state);
        for (int64_t r = 0; r < count; ++r) {
          std::copy_n(carry + r * kChunk, len, buf.row(kG, r) + t0);
        }
      }
      for (int64_t r = 0; r < count; ++r) {
        const int64_t row = first + r, b = row / s.D, d = row % s.D;
        const T* B_row = B + ((b * s.G + s.group_of(d)) * N + n) * L;
        const int64_t offset = (row * N + n) * L;
        dA_rows[row * N + n] = backward_state_row<T>(L, A[d * N + n], buf.row(kDt, r), buf.row(kDtu, r), u + row * L,
                                                     B_row, h + offset, buf.row(kDecay, r), buf.row(kG, r),
                                                     buf.row(kWork, r),
                                                     buf.row(kDdt, r), du + row * L, dB_channels + offset);
      }
    }
    for (int64_t r = 0; r < count; ++r) {
      const int64_t row = first + r;
      T* ddelta_row = ddelta + row * L;
      multiply(buf.row(kDdt, r), buf.row(kSlope, r), L, ddelta_row);
      dbias_rows[row] = sum_as_double(ddelta_row, L);
    }
  });
}

// dB[b, g, n, :] = sum over the channels d of group g of dB_channels[b, d, n, :], in ascending d.
template <typename T>
void sum_groups(const ScanShape& s, const T* dB_channels, T* dB) {
  const int64_t per_group = s.D / s.G, L = s.L, N = s.N;
  parallel_blocks(s.batch * s.G * N, items_per_block(per_group * L), per_group * L, [&](int64_t begin, int64_t end) {
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

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
