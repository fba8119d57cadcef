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
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/fast_math.h"
#include "cpu/neighbourhood.h"
#include "cpu/parallel.h"
#include "cpu/scratch.h"
#include "cpu/simd.h"
#include "cpu/vector_loops.h"

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {
namespace {

// Problem sizes of one call; a pixel p = ((bh * H) + i) * W + j with bh = batch * heads + head.
struct Geometry {
  int64_t batch_heads, heads, H, W, dim;
  const AxisWindows& rows;
  const AxisWindows& cols;
  int64_t slots() const { return rows.kernel * cols.kernel; }
};

// body(begin, end) over query rows (batch * heads * H of them), shared out by parallel_blocks.
template <typename F>
void parallel_rows(const Geometry& g, const F& body) {
  const int64_t per_row = g.W * g.slots() * g.dim;
  parallel_blocks(g.batch_heads * g.H, items_per_block(per_row), per_row, body);
}

// out = softmax(x) over n entries (out may be x): the max, exp(x - max) and their sum in vector
// loops, as torch.softmax computes it.
template <typename T>
void softmax_of(const T* x, int64_t n, T* out) {
  Vec<T> vmax;
  for (int l = 0; l < kLanes<T>; ++l) {
    vmax[l] = x[0];
  }
  int64_t e = 0;
  for (; e + kLanes<T> <= n; e += kLanes<T>) {
    const Vec<T> v = load(x + e);
    vmax = vmax > v ? vmax : v;
  }
  T max = vmax[0];
  for (int l = 1; l < kLanes<T>; ++l) {
    max = std::max(max, vmax[l]);
  }
  for (; e < n; ++e) {
    max = std::max(max, x[e]);
  }
  for (int64_t t = 0; t < n; ++t) {
    if constexpr (std::is_same_v<T, float>) {
      out[t] = exp_nonpositive(x[t] - max);
    } else {
      out[t] = exp_fast<T>(x[t] - max);
    }
  }
  const T scale = T(1) / sum(out, n);
  for (int64_t t = 0; t < n; ++t) {
    out[t] *= scale;
  }
}

template <typename T>
void neighbourhood_dot_generic(const Geometry& g, const T* x, const T* y, const T* rpb, bool softmax, T* out) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W;
  const int64_t bias_w = 2 * kw - 1, bias_size = (2 * kh - 1) * bias_w;
  parallel_rows(g, [&](int64_t begin, int64_t end) {
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
        if (softmax) {
          softmax_of(o, g.slots(), o);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------- vectorised paths
//
// neighbourhood_dot, vectorised over a window row: the keys of query (i, j) in window row th are
// kw columns key_start[j] + tw * dilation. Stored channel-major with each dilation group's columns
// side by side ("keys by column"), those kw columns are adjacent: one query's kw logits of a window
// row are then one or two vector multiply-adds per channel (a broadcast query channel times kw
// consecutive keys), with no horizontal sums, and the query's channel is reused by several rows.

// Each column's position when the columns of each dilation group are side by side, groups in order.
inline std::vector<int64_t> positions_by_group(const Geometry& g) {
  std::vector<int64_t> position(g.W);
  int64_t next = 0;
  for (int64_t group = 0; group < g.cols.dilation; ++group) {
    for (int64_t col = group; col < g.W; col += g.cols.dilation) {
      position[col] = next++;
    }
  }
  return position;
}

using FloatVec = Vec<float>;
constexpr int kTileLanes = kLanes<float>;

// One step of the in-register transpose: rows a and b exchange their blocks of kBlock lanes.
template <int kBlock, bool kUpper, size_t... E>
inline FloatVec exchange_blocks(FloatVec a, FloatVec b, std::index_sequence<E...>) {
  constexpr int L = kTileLanes;
  return __builtin_shufflevector(
      a, b,
      ((static_cast<int>(E) / kBlock) % 2 == 0 ? (kUpper ? static_cast<int>(E) + kBlock : static_cast<int>(E))
                                               : (kUpper ? L + static_cast<int>(E) : L + static_cast<int>(E) - kBlock))...);
}

template <int kBlock>
inline void transpose_step(FloatVec (&rows)[kTileLanes]) {
  constexpr auto lanes = std::make_index_sequence<kTileLanes>{};
  for (int r = 0; r < kTileLanes; ++r) {
    if ((r & kBlock) == 0) {
      const FloatVec a = rows[r], b = rows[r + kBlock];
      rows[r] = exchange_blocks<kBlock, false>(a, b, lanes);
      rows[r + kBlock] = exchange_blocks<kBlock, true>(a, b, lanes);
    }
  }
  if constexpr (kBlock > 1) {
    transpose_step<kBlock / 2>(rows);
  }
}

// The inverse of positions_by_group: the column at each position.
inline std::vector<int64_t> columns_by_position(const std::vector<int64_t>& position) {
  std::vector<int64_t> column(position.size());
  for (size_t col = 0; col < position.size(); ++col) {
    column[position[col]] = static_cast<int64_t>(col);
  }
  return column;
}

// Keys by column: y (bh, H, W, C) as (bh, H, C, padded_w) with column col at
// group_start[col % d] + col / d, and padding so that a full vector read past a window stays inside.
template <typename T>
struct KeysByColumn {
  int64_t padded_w;
  std::vector<int64_t> position;  // of each column
  ScratchLease storage;

  KeysByColumn(const Geometry& g, const T* y, int64_t pad)
      : padded_w(g.W + pad),
        position(positions_by_group(g)),
        storage(static_cast<size_t>(g.batch_heads * g.H * g.dim * (g.W + pad)) * sizeof(T)) {
    const int64_t W = g.W, C = g.dim;
    // The padding is zeros (finite values that read as such).
    data = storage.as<T>();
    row_size = C * padded_w;
    T* out = storage.as<T>();
    const std::vector<int64_t> column = columns_by_position(position);
    parallel_rows(g, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const T* in = y + row * W * C;
        T* o = out + row * C * padded_w;
        int64_t c0 = 0;
        if constexpr (std::is_same_v<T, float>) {
          // Blocks of L positions x L channels through an in-register transpose, the padding's zeros
          // coming from the positions past W: element by element, with a fill call per channel row
          // for the padding, this copy was a large part of the logits' time on small maps.
          constexpr int64_t L = kTileLanes;
          for (; c0 + L <= C; c0 += L) {
            for (int64_t p = 0; p < padded_w; p += L) {
              FloatVec block[L];
              for (int64_t u = 0; u < L; ++u) {
                block[u] = p + u < W ? load<float>(in + column[p + u] * C + c0) : FloatVec{};
              }
              transpose_step<L / 2>(block);
              if (p + L <= padded_w) {
                for (int64_t u = 0; u < L; ++u) {
                  store(o + (c0 + u) * padded_w + p, block[u]);
                }
              } else {
                for (int64_t u = 0; u < L; ++u) {
                  for (int64_t e = 0; e < padded_w - p; ++e) {
                    o[(c0 + u) * padded_w + p + e] = block[u][e];
                  }
                }
              }
            }
          }
        }
        for (int64_t c = c0; c < C; ++c) {
          for (int64_t p = 0; p < padded_w; ++p) {
            o[c * padded_w + p] = p < W ? in[column[p] * C + c] : T(0);
          }
        }
      }
    });
  }
  const T* row(int64_t r) const { return data + r * row_size; }
  const T* data = nullptr;
  int64_t row_size = 0;
};

// exp of each lane of a vector of values <= 0 (float: exp_nonpositive on the whole vector; float64
// keeps libm, as exp_fast does). Always inlined, as exp_nonpositive: it stayed out of line and passed
// every vector through memory, 5 % of the logits' time at stage 2.
template <typename T, typename V>
[[gnu::always_inline]] inline V exp_lanes(V v) {
  if constexpr (std::is_same_v<T, float>) {
    return exp_nonpositive(v);
  } else {
    for (size_t l = 0; l < sizeof(V) / sizeof(T); ++l) {
      v[l] = exp_fast<T>(v[l]);
    }
    return v;
  }
}

// softmax over a whole window held in registers: kRows rows of kVecs vectors, of which the first
// kw lanes of each row are the window's (the rest belong to neighbouring columns and are left out).
// The max and the sum reach every lane through across_lanes: no value leaves the registers.
template <typename T, int kRows, int kVecs, typename V>
inline void softmax_in_registers(V (&acc)[kRows][kVecs], int64_t kw) {
  constexpr int kWidth = sizeof(V) / sizeof(T);
  const V zero{};
  V lane{};
  for (int l = 0; l < kWidth; ++l) {
    lane[l] = static_cast<T>(l);
  }
  const T lowest = -std::numeric_limits<T>::infinity();
  V vmax = zero + lowest;
  for (int v = 0; v < kVecs; ++v) {
    // Only a vector that reaches past kw has lanes to leave out.
    const bool partial = (v + 1) * kWidth > kw;
    const auto outside = lane + static_cast<T>(v * kWidth) >= static_cast<T>(kw);
    for (int u = 0; u < kRows; ++u) {
      if (partial) {
        acc[u][v] = outside ? zero + lowest : acc[u][v];
      }
      vmax = vmax < acc[u][v] ? acc[u][v] : vmax;
    }
  }
  vmax = across_lanes(vmax, [](V a, V b) { return a < b ? b : a; });
  V vsum = zero;
  for (int u = 0; u < kRows; ++u) {
    for (int v = 0; v < kVecs; ++v) {
      acc[u][v] = exp_lanes<T>(acc[u][v] - vmax);  // exp(-inf) = 0 in the left-out lanes
      vsum += acc[u][v];
    }
  }
  const V scale = (zero + T(1)) / across_lanes(vsum, [](V a, V b) { return a + b; });
  for (int u = 0; u < kRows; ++u) {
    for (int v = 0; v < kVecs; ++v) {
      acc[u][v] *= scale;
    }
  }
}

// kRows window rows of one query: acc[u] = bias[u] + sum_c x[c] * keys[u] + c * stride, kVecs vectors
// of kBytes wide, stored at out + u * kw (with `softmax`, the whole window: softmaxed first). Rows are
// stored in increasing order, each over the spare lanes of the one before; the rows whose vectors
// would reach past `room` elements (into the next query's logits) go through a local copy.
template <typename T, int kRows, int kVecs, int kBytes>
inline void window_rows(const T* __restrict x, int64_t C, const T* const* keys, int64_t stride,
                        const T* const* bias, int64_t kw, bool softmax, T* out, int64_t room) {
  using V = VecOfBytes<T, kBytes>;
  constexpr int kWidth = kBytes / sizeof(T);
  V acc[kRows][kVecs];
  for (int u = 0; u < kRows; ++u) {
    for (int v = 0; v < kVecs; ++v) {
      acc[u][v] = load_as<V>(bias[u] + v * kWidth);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const T xc = x[c];
    for (int u = 0; u < kRows; ++u) {
      const T* k = keys[u] + c * stride;
      for (int v = 0; v < kVecs; ++v) {
        acc[u][v] += xc * load_as<V>(k + v * kWidth);
      }
    }
  }
  if (softmax) {
    softmax_in_registers<T>(acc, kw);
  }
  T staged[(kRows + 1) * kVecs * kWidth];  // kw <= kVecs * kWidth
  int staged_from = kRows;
  for (int u = 0; u < kRows; ++u) {
    const bool fits = u * kw + kVecs * kWidth <= room;
    staged_from = fits ? staged_from : std::min(staged_from, u);
    T* row = fits ? out + u * kw : staged + (u - staged_from) * kw;
    for (int v = 0; v < kVecs; ++v) {
      store(row + v * kWidth, acc[u][v]);
    }
  }
  if (staged_from < kRows) {
    std::copy_n(staged, (kRows - staged_from) * kw, out + staged_from * kw);
  }
}

// f(std::integral_constant<int, n>{}) for a run-time n in 1..kMax.
template <int kMax, typename F>
inline void with_count(int64_t n, const F& f) {
  if constexpr (kMax > 1) {
    if (n < kMax) return with_count<kMax - 1>(n, f);
  }
  f(std::integral_constant<int, kMax>{});
}

// ------------------------------------------------------------------- queries that share a window
//
// At a border, and wherever a dilation group is barely longer than the kernel, many queries read the
// very same keys: along an axis, every query with the same key_start reads the same kernel keys (a
// dilation-5 group of 11 columns with K = 11 has one window for all 11 queries). Such a block of
// queries (one window of rows x one window of columns) is a small matrix product: its keys are packed
// once, window slot by slot, into (C, slots) rows, and each query's logits are kNV full vectors of
// slots, a broadcast query channel times a packed key vector, several queries sharing each key load.
// The per-query path leaves lanes empty (a window row of 11 in 16 lanes) and loads keys once per
// query; this path fills every lane and loads keys once per block.

// Positions of an axis grouped by their window: class c holds positions order[offset[c] .. offset[c+1]).
struct AxisClasses {
  std::vector<int64_t> order, offset;
  explicit AxisClasses(const AxisWindows& axis) {
    std::vector<int64_t> count(axis.length + 1, 0);
    for (int64_t p = 0; p < axis.length; ++p) {
      ++count[axis.key_start[p] + 1];
    }
    offset.push_back(0);
    for (int64_t s = 0; s < axis.length; ++s) {
      if (count[s + 1] > 0) {
        offset.push_back(offset.back() + count[s + 1]);
      }
    }
    order.resize(axis.length);
    std::vector<int64_t> fill(axis.length, -1);  // first slot in `order` of each key_start's class
    for (int64_t s = 0, c = 0; s < axis.length; ++s) {
      if (count[s + 1] > 0) {
        fill[s] = offset[c++];
      }
    }
    for (int64_t p = 0; p < axis.length; ++p) {
      order[fill[axis.key_start[p]]++] = p;
    }
  }
  int64_t count() const { return static_cast<int64_t>(offset.size()) - 1; }
  int64_t size(int64_t c) const { return offset[c + 1] - offset[c]; }
  const int64_t* positions(int64_t c) const { return order.data() + offset[c]; }
};

// Below this many queries a block goes query by query: packing its keys would cost more than it saves.
constexpr int64_t kMinSharedQueries = 8;

// Vectors of slots one pass holds in registers, and queries per pass for kNV of them: kQ * kNV
// accumulators, kNV packed keys and kQ broadcast channels within the register file.
constexpr int kMaxSharedVecs = kVectorRegisters >= 32 ? 8 : 4;
template <int kNV>
constexpr int kSharedQueries = std::clamp((kVectorRegisters - 6) / (kNV + 1), 1, 4);

// kQ queries' logits over kNV vectors of packed slots: acc[m] = bias[m] + sum_c x[m][c] * keys[c],
// stored at out[m] (the first n of them; with `softmax`, softmaxed over those n first).
template <typename T, int kQ, int kNV>
inline void shared_window_pass(const T* const* x, int64_t C, const T* __restrict keys, int64_t key_stride,
                               const T* const* bias, int64_t n, bool softmax, T* const* out) {
  using V = Vec<T>;
  constexpr int L = kLanes<T>;
  V acc[kQ][1][kNV];
  for (int m = 0; m < kQ; ++m) {
    for (int v = 0; v < kNV; ++v) {
      acc[m][0][v] = load(bias[m] + v * L);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    V k[kNV];
    for (int v = 0; v < kNV; ++v) {
      k[v] = load(keys + c * key_stride + v * L);
    }
    for (int m = 0; m < kQ; ++m) {
      const T xc = x[m][c];
      for (int v = 0; v < kNV; ++v) {
        acc[m][0][v] += xc * k[v];
      }
    }
  }
  for (int m = 0; m < kQ; ++m) {
    if (softmax) {
      softmax_in_registers<T>(acc[m], n);
    }
    int v = 0;
    for (; v < kNV && (v + 1) * L <= n; ++v) {
      store(out[m] + v * L, acc[m][0][v]);
    }
    if (v < kNV && v * L < n) {  // the last, partial vector: only its first lanes are this query's
      T staged[L];
      store(staged, acc[m][0][v]);
      std::copy_n(staged, n - v * L, out[m] + v * L);
    }
  }
}

// The logits of every query of a block of queries sharing one window, kNV vectors of slots a pass.
template <typename T, int kNV>
struct SharedWindowLogits {
  const Geometry& g;
  const KeysByColumn<T>& keys;
  const T* x;
  const T* rpb;  // may be null
  bool softmax;
  T* out;
  int64_t n, padded;  // slots, and slots rounded up to whole passes of kNV vectors
  std::vector<T> bias;  // packed: (heads, kh bias rows, kw bias columns, padded)

  SharedWindowLogits(const Geometry& g_, const KeysByColumn<T>& keys_, const T* x_, const T* rpb_, bool softmax_,
                     T* out_)
      : g(g_), keys(keys_), x(x_), rpb(rpb_), softmax(softmax_), out(out_), n(g_.slots()) {
    const int64_t kh = g.rows.kernel, kw = g.cols.kernel;
    constexpr int64_t kPass = int64_t{kNV} * kLanes<T>;
    padded = (n + kPass - 1) / kPass * kPass;
    // A window's bias is the (kh, kw) block of the table at (bias_start row, bias_start col), both in
    // [0, K-1]: packed once per start pair, a query's bias is then whole-vector loads.
    const int64_t starts = rpb != nullptr ? g.heads * kh * kw : 1;
    bias.assign(starts * padded, T(0));
    if (rpb != nullptr) {
      const int64_t bias_w = 2 * kw - 1, bias_size = (2 * kh - 1) * bias_w;
      for (int64_t e = 0; e < starts; ++e) {
        const int64_t head = e / (kh * kw), br = e / kw % kh, bc = e % kw;
        const T* table = rpb + head * bias_size + br * bias_w + bc;
        for (int64_t th = 0; th < kh; ++th) {
          std::copy_n(table + th * bias_w, kw, bias.data() + e * padded + th * kw);
        }
      }
    }
  }

  // (C, padded) plus the spill of pack's last vector store: kw rounded up to whole vectors.
  int64_t packed_size() const { return g.dim * padded + (g.cols.kernel + kLanes<T> - 1) / kLanes<T> * kLanes<T>; }

  const T* bias_of(int64_t bh, int64_t i, int64_t j) const {
    if (rpb == nullptr) {
      return bias.data();
    }
    const int64_t kh = g.rows.kernel, kw = g.cols.kernel;
    return bias.data() + (((bh % g.heads) * kh + g.rows.bias_start[i]) * kw + g.cols.bias_start[j]) * padded;
  }

  // The (C, padded) packed keys of the window of query (i, j) of plane bh.
  void pack(int64_t bh, int64_t i, int64_t j, T* packed) const {
    const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim;
    const int64_t first = keys.position[g.cols.key_start[j]];
    // Window rows go in one after another as whole vectors, each over the spare lanes of the one
    // before (the last one's spill lands in the padding, which the fill below resets): a call to
    // memmove per kw elements cost more than the products of a block of six queries.
    // Channel by channel, so that a spill into the next channel's row is written over after.
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t th = 0; th < kh; ++th) {
        const T* row = keys.row(bh * g.H + g.rows.key(i, th)) + first + c * keys.padded_w;
        for (int64_t e = 0; e < kw; e += kLanes<T>) {
          store(packed + c * padded + th * kw + e, load(row + e));
        }
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      std::fill(packed + c * padded + n, packed + (c + 1) * padded, T(0));
    }
  }

  // The queries of `rows` x `cols` (positions that share one window), in passes of kQ queries over
  // chunks of kNV vectors; `packed` holds packed_size() elements.
  void block(int64_t bh, const int64_t* rows, int64_t nrows, const int64_t* cols, int64_t ncols, T* packed) const {
    constexpr int kQ = kSharedQueries<kNV>;
    constexpr int L = kLanes<T>;
    pack(bh, rows[0], cols[0], packed);
    const int64_t chunks = padded / (int64_t{kNV} * L);
    const bool whole = chunks == 1;
    const int64_t queries = nrows * ncols;
    const T* xs[kQ];
    const T* bs[kQ];
    T* os[kQ];
    const T* next_xs[kQ];
    const T* next_bs[kQ];
    T* next_os[kQ];
    // Pass q0's queries, bias rows and outputs; the next pass's are fetched while this one computes
    // (the queries of a block are pixels apart, and their lines arrive one miss at a time otherwise).
    auto queries_of_pass = [&](int64_t q0, const T** xq, const T** bq, T** oq) {
      for (int m = 0; m < kQ; ++m) {
        // A short last pass repeats its last query: the same values written twice to the same place.
        const int64_t q = std::min(q0 + m, queries - 1);
        const int64_t i = rows[q / ncols], j = cols[q % ncols];
        const int64_t p = (bh * g.H + i) * g.W + j;
        xq[m] = x + p * g.dim;
        bq[m] = bias_of(bh, i, j);
        oq[m] = out + p * n;
      }
    };
    queries_of_pass(0, next_xs, next_bs, next_os);
    for (int64_t q0 = 0; q0 < queries; q0 += kQ) {
      std::copy_n(next_xs, kQ, xs);
      std::copy_n(next_bs, kQ, bs);
      std::copy_n(next_os, kQ, os);
      if (q0 + kQ < queries) {
        queries_of_pass(q0 + kQ, next_xs, next_bs, next_os);
        for (int m = 0; m < kQ; ++m) {
          prefetch_lines(next_xs[m], g.dim * int64_t{sizeof(T)});
          prefetch_lines_for_write(next_os[m], n * int64_t{sizeof(T)});
        }
      }
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        const int64_t from = chunk * kNV * L;
        const T* cb[kQ];
        T* co[kQ];
        for (int m = 0; m < kQ; ++m) {
          cb[m] = bs[m] + from;
          co[m] = os[m] + from;
        }
        shared_window_pass<T, kQ, kNV>(xs, g.dim, packed + from, padded, cb, std::min(n - from, int64_t{kNV} * L),
                                       softmax && whole, co);
      }
      if (softmax && !whole) {
        for (int m = 0; m < kQ && q0 + m < queries; ++m) {
          softmax_of(os[m], n, os[m]);
        }
      }
    }
  }
};

// ------------------------------------------------------------- interior queries, a vector of them
//
// Away from a column border, consecutive queries of a dilation group read consecutive keys: query p
// (a position in keys-by-column order) reads positions p - r .. p + r. A tile of L such queries
// (one lane each) then needs, per channel and window row, the 2L keys from an aligned position B:
// two aligned loads, and window slot tw is those shifted by tw lanes, a register shuffle. Every
// lane of every multiply-add is a logit, and no load straddles cache lines (the per-query path
// loads each window row unaligned, once per channel and query). The logits come out slot-major
// (a vector of L queries per slot); the softmax runs down the slots, then 16x16 (8x8) blocks are
// transposed in registers into each query's row of slots.

// A tile costs the same whatever number of its lanes are queries: below half of them, the queries go
// one by one (at 14x14 with kernel 7, a row's six interior queries made a tile slower than they were).
constexpr int64_t kMinTileQueries = kTileLanes / 2;

// The tiles of the interior queries at positions [first, last]: tile(base, lo, hi) for each tile
// whose lanes lo..hi (the queries at positions base + r + lane) are at least kMinTileQueries.
template <typename F>
inline void for_each_tile(int64_t first, int64_t last, int64_t r, const F& tile) {
  constexpr int64_t L = kTileLanes;
  for (int64_t base = (first - r) / L * L; base + r <= last; base += L) {
    const int64_t lo = std::max<int64_t>(first - r - base, 0), hi = std::min<int64_t>(last - r - base, L - 1);
    if (hi - lo + 1 >= kMinTileQueries) {
      tile(base, lo, hi);
    }
  }
}

// Lanes kShift.. of lo, then the first of hi. On AVX-512 as valignd: GCC lowers the generic shuffle to
// vpermt2ps with an index vector, which timed slower on an AVX-512 EPYC
// (benchmarks/results/ab-attention-forward-tile-shifts-cpu-2core-avx512.md).
template <int kShift, size_t... E>
inline FloatVec shifted_by(FloatVec lo, FloatVec hi, std::index_sequence<E...>) {
#if defined(__AVX512F__)
  return std::bit_cast<FloatVec>(_mm512_alignr_epi32(std::bit_cast<__m512i>(hi), std::bit_cast<__m512i>(lo), kShift));
#else
  return __builtin_shufflevector(lo, hi, (kShift + static_cast<int>(E))...);
#endif
}

// The logits of the interior queries of one row of one plane, in tiles of kTileLanes (kKw: the window's
// columns, at most a vector). keys_by_column's rows start aligned and hold 2 vectors past the last window.
struct InteriorTiles {
  const Geometry& g;
  const KeysByColumn<float>& keys;
  const float* x;
  const float* rpb;
  bool softmax;
  float* out;

  // Tiles over positions [first, last] (one group's interior queries) of query row i of plane bh;
  // `column` maps a position back to its column.
  template <int kKw>
  void run(int64_t bh, int64_t i, int64_t first, int64_t last, const int64_t* column) const {
    constexpr int L = kTileLanes;
    constexpr int64_t r = kKw / 2;
    constexpr auto lanes = std::make_index_sequence<L>{};
    const int64_t kh = g.rows.kernel, n = g.slots(), C = g.dim;
    const int64_t bias_w = 2 * kKw - 1, bias_size = (2 * kh - 1) * bias_w;
    const float* head_bias = rpb != nullptr ? rpb + (bh % g.heads) * bias_size + g.rows.bias_start[i] * bias_w + r : nullptr;
    alignas(64) float qt[kMaxChannels * L];  // the tile's queries, channel-major
    alignas(64) float logits[kMaxSlots * L];  // slot-major
    // Lane t is the query at position base + r + t, one of [first, last] for t in lo..hi.
    for_each_tile(first, last, r, [&](int64_t base, int64_t lo, int64_t hi) {
      for (int64_t t = 0; t < L; ++t) {
        const bool valid = t >= lo && t <= hi;
        const float* q = x + ((bh * g.H + i) * g.W + (valid ? column[base + r + t] : 0)) * C;
        for (int64_t c = 0; c < C; ++c) {
          qt[c * L + t] = valid ? q[c] : 0.0f;
        }
      }
      for (int64_t th = 0; th < kh; ++th) {
        const float* row = keys.row(bh * g.H + g.rows.key(i, th)) + base;
        FloatVec acc[kKw];
        for (int tw = 0; tw < kKw; ++tw) {
          acc[tw] = FloatVec{} + (head_bias != nullptr ? head_bias[th * bias_w + tw] : 0.0f);
        }
        for (int64_t c = 0; c < C; ++c) {
          const float* k = row + c * keys.padded_w;
          const FloatVec k0 = load<float>(k), k1 = load<float>(k + L);
          const FloatVec qc = load<float>(qt + c * L);
          [&]<size_t... tw>(std::index_sequence<tw...>) {
            ((acc[tw] += qc * shifted_by<static_cast<int>(tw)>(k0, k1, lanes)), ...);
          }(std::make_index_sequence<kKw>{});
        }
        for (int tw = 0; tw < kKw; ++tw) {
          store(logits + (th * kKw + tw) * L, acc[tw]);
        }
      }
      FloatVec scale = FloatVec{} + 1.0f;
      if (softmax) {
        FloatVec vmax = load<float>(logits);
        for (int64_t e = 1; e < n; ++e) {
          const FloatVec v = load<float>(logits + e * L);
          vmax = vmax < v ? v : vmax;
        }
        FloatVec vsum{};
        for (int64_t e = 0; e < n; ++e) {
          const FloatVec v = exp_nonpositive(load<float>(logits + e * L) - vmax);
          vsum += v;
          store(logits + e * L, v);
        }
        scale = scale / vsum;
      }
      float* rows_out[L];
      for (int64_t t = lo; t <= hi; ++t) {
        rows_out[t] = out + ((bh * g.H + i) * g.W + column[base + r + t]) * n;
      }
      for (int64_t s0 = 0; s0 < n; s0 += L) {
        FloatVec block[L];
        for (int u = 0; u < L; ++u) {
          // Slots past n (the last block) read whatever follows; those lanes are not stored.
          block[u] = load<float>(logits + std::min<int64_t>(s0 + u, n - 1) * L) * scale;
        }
        transpose_step<L / 2>(block);
        const int64_t count = std::min<int64_t>(L, n - s0);
        for (int64_t t = lo; t <= hi; ++t) {
          if (count == L) {
            store(rows_out[t] + s0, block[t]);
          } else {
            for (int64_t u = 0; u < count; ++u) {
              rows_out[t][s0 + u] = block[t][u];
            }
          }
        }
      }
    });
  }
  static constexpr int64_t kMaxSlots = 16 * 16;  // kh * kw
  static constexpr int64_t kMaxChannels = 256;

  using Runner = void (InteriorTiles::*)(int64_t, int64_t, int64_t, int64_t, const int64_t*) const;
  // run<kw>, for an odd kw of at most a vector; null when tiles cannot take this geometry.
  static Runner runner(const Geometry& g) {
    const int64_t kw = g.cols.kernel;
    if (g.slots() > kMaxSlots || g.dim > kMaxChannels || kw > kTileLanes) {
      return nullptr;
    }
    Runner found = nullptr;
    [&]<int... k>(std::integer_sequence<int, k...>) {
      ((kw == 2 * k + 1 && 2 * k + 1 <= kTileLanes ? (found = &InteriorTiles::run<(2 * k + 1 <= kTileLanes ? 2 * k + 1 : 1)>)
                                                  : found),
       ...);
    }(std::make_integer_sequence<int, 8>{});
    return found;
  }
};

// Per dilation group, the positions (keys-by-column order) of its interior queries: columns whose
// window is theirs alone (a class of one) and starts r * dilation to their left, with the bias table's
// centre column; `tiled`: the columns whose queries for_each_tile takes.
struct InteriorRuns {
  std::vector<int64_t> first, last;  // per group; last < first: none
  std::vector<int64_t> column;       // position -> column
  std::vector<char> tiled;           // per column; empty: no tiles

  InteriorRuns() = default;
  InteriorRuns(const Geometry& g, const AxisClasses& classes, const std::vector<int64_t>& position) {
    const AxisWindows& a = g.cols;
    const int64_t d = a.dilation, r = a.kernel / 2;
    first.assign(d, 0);
    last.assign(d, -1);
    column = columns_by_position(position);
    tiled.assign(g.W, 0);
    std::vector<char> alone(g.W, 0);
    for (int64_t c = 0; c < classes.count(); ++c) {
      if (classes.size(c) == 1) {
        alone[classes.positions(c)[0]] = 1;
      }
    }
    for (int64_t group = 0; group < d; ++group) {
      int64_t lo = -1, hi = -2;
      for (int64_t j = group; j < g.W; j += d) {
        const bool interior = alone[j] && a.key_start[j] == j - r * d && a.bias_start[j] == r;
        if (interior) {
          lo = lo < 0 ? position[j] : lo;
          hi = position[j];
        }
      }
      if (hi - lo + 1 >= kMinTileQueries) {
        first[group] = lo;
        last[group] = hi;
        for_each_tile(lo, hi, r, [&](int64_t base, int64_t lane_lo, int64_t lane_hi) {
          for (int64_t t = lane_lo; t <= lane_hi; ++t) {
            tiled[column[base + r + t]] = 1;
          }
        });
      }
    }
  }
};

template <typename T, int kVecs, int kBytes = kVectorBytes>
void neighbourhood_dot_by_rows(const Geometry& g, const T* x, const T* y, const T* rpb, bool softmax, T* out) {
  constexpr int kWidth = kBytes / sizeof(T);
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W;
  const int64_t bias_w = 2 * kw - 1, bias_size = (2 * kh - 1) * bias_w;
  // float32 on AVX2 and AVX-512: the interior queries go in vectors of them (InteriorTiles).
  InteriorTiles::Runner tile_runner = nullptr;
  if constexpr (std::is_same_v<T, float> && kVectorBytes >= 32) {
    tile_runner = InteriorTiles::runner(g);
  }
  const AxisClasses row_classes(g.rows), col_classes(g.cols);
  // Only where tiles can run at all (float32 on AVX2/AVX-512, a window they take).
  const InteriorRuns interior =
      tile_runner != nullptr ? InteriorRuns(g, col_classes, positions_by_group(g)) : InteriorRuns();
  const bool tiles = tile_runner != nullptr &&
                     std::any_of(interior.tiled.begin(), interior.tiled.end(), [](char t) { return t != 0; });
  // Padding for a vector read past any window: the per-query rows' kVecs of kBytes, pack's full vectors;
  // for tiles, two vectors past the last window and rows of whole vectors (so that each starts aligned).
  int64_t pad = std::max<int64_t>(kVecs * kWidth, (kw + kLanes<T> - 1) / kLanes<T> * kLanes<T>);
  if (tiles) {
    pad = (W + std::max<int64_t>(pad, 2 * kLanes<T>) + kLanes<T> - 1) / kLanes<T> * kLanes<T> - W;
  }
  const KeysByColumn<T> keys(g, y, pad);
  const int64_t stride = keys.padded_w;
  // The accumulators start from the bias: full vectors read from a window row of the table run
  // past its kw entries (into lanes that are never stored), so the copy has a vector of zeros after it.
  std::vector<T> bias_table(g.heads * bias_size + kVecs * kWidth, T(0));
  if (rpb != nullptr) {
    std::copy_n(rpb, g.heads * bias_size, bias_table.data());
  }
  // Window rows in as few equal groups as the registers hold: each group is one pass over the
  // channels with one accumulator chain per row and vector, and the chains must outnumber the
  // multiply-add latency (a pass over only 4 rows leaves half the FMA throughput unused).
  constexpr int kMaxRows = std::min(13, (kVectorRegisters - 3) / kVecs);
  const int64_t groups = (kh + kMaxRows - 1) / kMaxRows;
  const int64_t group_rows = (kh + groups - 1) / groups;
  const bool softmax_whole_window = softmax && groups == 1;
  const int64_t bias_step = rpb != nullptr ? bias_w : 0;
  auto one_query = [&](int64_t bh, int64_t i, int64_t j) {
    // Without a table every query starts from the zeros at its end.
    const T* head_bias = rpb != nullptr ? bias_table.data() + (bh % g.heads) * bias_size + g.rows.bias_start[i] * bias_w
                                        : bias_table.data() + g.heads * bias_size;
    const int64_t p = (bh * g.H + i) * W + j;
    const T* xq = x + p * C;
    const int64_t first = keys.position[g.cols.key_start[j]];
    const T* query_bias = head_bias + (rpb != nullptr ? g.cols.bias_start[j] : 0);
    T* o = out + p * g.slots();
    const T* rows_of_window[kMaxRows];
    const T* bias_of_window[kMaxRows];
    for (int64_t th = 0; th < kh; th += group_rows) {
      const int64_t rows = std::min(group_rows, kh - th);
      for (int64_t u = 0; u < rows; ++u) {
        rows_of_window[u] = keys.row(bh * g.H + g.rows.key(i, th + u)) + first;
        bias_of_window[u] = query_bias + (th + u) * bias_step;
      }
      with_count<kMaxRows>(rows, [&](auto count) {
        window_rows<T, decltype(count)::value, kVecs, kBytes>(xq, C, rows_of_window, stride, bias_of_window, kw,
                                                              softmax_whole_window, o + th * kw, (kh - th) * kw);
      });
    }
    if (softmax && !softmax_whole_window) {
      softmax_of(o, g.slots(), o);
    }
  };
  // Tasks are (plane, class of query rows): within one, each class of query columns is a block of
  // queries with one window, taken together when it is large enough (SharedWindowLogits).
  const int64_t vectors = (g.slots() + kLanes<T> - 1) / kLanes<T>;
  with_count<kMaxSharedVecs>(std::min<int64_t>(vectors, kMaxSharedVecs), [&](auto nv) {
    const SharedWindowLogits<T, decltype(nv)::value> shared(g, keys, x, rpb, softmax, out);
    const int64_t per_task = g.H / row_classes.count() * W * g.slots() * C;
    parallel_blocks(g.batch_heads * row_classes.count(), items_per_block(per_task), per_task,
                    [&](int64_t begin, int64_t end) {
                      // Only tasks with a shared block need the packing buffer, and pack() writes all of it.
                      std::unique_ptr<T[]> packed;
                      for (int64_t task = begin; task < end; ++task) {
                        const int64_t bh = task / row_classes.count(), ra = task % row_classes.count();
                        const int64_t* rows = row_classes.positions(ra);
                        const int64_t nrows = row_classes.size(ra);
                        if constexpr (std::is_same_v<T, float>) {
                          if (tiles) {
                            const InteriorTiles tiler{g, keys, x, rpb, softmax, out};
                            for (int64_t a = 0; a < nrows; ++a) {
                              for (int64_t group = 0; group < g.cols.dilation; ++group) {
                                if (interior.last[group] >= interior.first[group]) {
                                  (tiler.*tile_runner)(bh, rows[a], interior.first[group], interior.last[group],
                                                       interior.column.data());
                                }
                              }
                            }
                          }
                        }
                        for (int64_t cb = 0; cb < col_classes.count(); ++cb) {
                          const int64_t* cols = col_classes.positions(cb);
                          const int64_t ncols = col_classes.size(cb);
                          if (tiles && ncols == 1 && interior.tiled[cols[0]]) {
                            continue;
                          }
                          if (nrows * ncols >= kMinSharedQueries) {
                            if (!packed) {
                              packed.reset(new T[shared.packed_size()]);
                            }
                            shared.block(bh, rows, nrows, cols, ncols, packed.get());
                            continue;
                          }
                          for (int64_t a = 0; a < nrows; ++a) {
                            for (int64_t b = 0; b < ncols; ++b) {
                              one_query(bh, rows[a], cols[b]);
                            }
                          }
                        }
                      }
                    });
  });
}

template <typename T>
void neighbourhood_dot(const Geometry& g, const T* x, const T* y, const T* rpb, bool softmax, T* out) {
  // A window row that fits half a vector is read as one: a full-width unaligned load (every
  // query's window starts elsewhere) spans two cache lines and costs two loads.
  if constexpr (kVectorBytes >= 32) {
    if (g.cols.kernel * static_cast<int64_t>(sizeof(T)) <= kVectorBytes / 2) {
      return neighbourhood_dot_by_rows<T, 1, kVectorBytes / 2>(g, x, y, rpb, softmax, out);
    }
  }
  switch ((g.cols.kernel + kLanes<T> - 1) / kLanes<T>) {
    case 1: return neighbourhood_dot_by_rows<T, 1>(g, x, y, rpb, softmax, out);
    case 2: return neighbourhood_dot_by_rows<T, 2>(g, x, y, rpb, softmax, out);
    case 3: return neighbourhood_dot_by_rows<T, 3>(g, x, y, rpb, softmax, out);
    default: return neighbourhood_dot_generic(g, x, y, rpb, softmax, out);
  }
}

// Weighted sums of channel rows, out = sum_k w_k * y_k: kept in registers as kVecs full vectors of
// channels, then a half and a quarter vector when kHalf / kQuarter ... A run of terms (add_terms) goes
// round kChains sets of accumulators, so that at least four multiply-add chains are in flight: with
// one, each term waits for the previous one's latency (at head dim 16, one vector per term).
template <typename T, int kVecs, bool kHalf = false, bool kQuarter = false>
struct ChannelSum {
  // Only named when used: a quarter of an SSE vector is narrower than one double.
  using Half = VecOfBytes<T, kHalf ? kVectorBytes / 2 : kVectorBytes>;
  using Quarter = VecOfBytes<T, kQuarter ? kVectorBytes / 4 : kVectorBytes>;
  static constexpr int kHalfAt = kVecs * kLanes<T>;
  static constexpr int kQuarterAt = kHalfAt + (kHalf ? kLanes<T> / 2 : 0);
  static constexpr int kVectorsPerTerm = std::max(kVecs + kHalf + kQuarter, 1);  // 0: no channels at all
  static constexpr int kChains = kVectorsPerTerm >= 4 ? 1 : (4 + kVectorsPerTerm - 1) / kVectorsPerTerm;
  T* out;
  Vec<T> acc[kChains][kVecs > 0 ? kVecs : 1] = {};
  Half half[kChains] = {};
  Quarter quarter[kChains] = {};
  ChannelSum(T* out_, int64_t) : out(out_) {}
  template <int kChain = 0>
  inline void add(T w, const T* __restrict y) {
    for (int v = 0; v < kVecs; ++v) {
      acc[kChain][v] += w * load(y + v * kLanes<T>);
    }
    if constexpr (kHalf) {
      half[kChain] += w * load_as<Half>(y + kHalfAt);
    }
    if constexpr (kQuarter) {
      quarter[kChain] += w * load_as<Quarter>(y + kQuarterAt);
    }
  }
  // n terms: term(t) gives the t-th weight and channel row (as a std::pair).
  template <typename Term>
  inline void add_terms(int64_t n, const Term& term) {
    int64_t t = 0;
    for (; t + kChains <= n; t += kChains) {
      [&]<int... kChain>(std::integer_sequence<int, kChain...>) {
        (std::apply([&](T w, const T* y) { add<kChain>(w, y); }, term(t + kChain)), ...);
      }(std::make_integer_sequence<int, kChains>{});
    }
    for (; t < n; ++t) {
      std::apply([&](T w, const T* y) { add(w, y); }, term(t));
    }
  }
  inline void finish() const {
    for (int v = 0; v < kVecs; ++v) {
      Vec<T> total = acc[0][v];
      for (int c = 1; c < kChains; ++c) {
        total += acc[c][v];
      }
      store(out + v * kLanes<T>, total);
    }
    if constexpr (kHalf) {
      Half total = half[0];
      for (int c = 1; c < kChains; ++c) {
        total += half[c];
      }
      store(out + kHalfAt, total);
    }
    if constexpr (kQuarter) {
      Quarter total = quarter[0];
      for (int c = 1; c < kChains; ++c) {
        total += quarter[c];
      }
      store(out + kQuarterAt, total);
    }
  }
};

// ... or, for any other channel count, accumulated in the output row itself.
template <typename T>
struct ChannelSumInMemory {
  T* out;
  int64_t C;
  ChannelSumInMemory(T* out_, int64_t C_) : out(out_), C(C_) { std::fill(out, out + C, T(0)); }
  inline void add(T w, const T* __restrict y) { axpy(w, y, out, C); }
  template <typename Term>
  inline void add_terms(int64_t n, const Term& term) {
    for (int64_t t = 0; t < n; ++t) {
      std::apply([&](T w, const T* y) { add(w, y); }, term(t));
    }
  }
  void finish() const {}
};

// One query's sum over its window: out[p] = sum_t w[p, t] y[key(p, t)], in a Sum (ChannelSum...).
template <typename T, typename Sum>
inline void query_sum(const Geometry& g, const T* w, const T* y, int64_t bh, int64_t i, int64_t j, T* out) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W;
  const int64_t p = (bh * g.H + i) * W + j;
  const T* wq = w + p * g.slots();
  const T* y_first = y + (bh * g.H * W + g.cols.key_start[j]) * C;
  const int64_t step = g.cols.dilation * C;
  Sum sum(out + p * C, C);
  for (int64_t th = 0; th < kh; ++th) {
    const T* w_row = wq + th * kw;
    const T* y_row = y_first + g.rows.key(i, th) * W * C;
    sum.add_terms(kw, [&](int64_t tw) { return std::pair(w_row[tw], y_row + tw * step); });
  }
  sum.finish();
}

template <typename T, typename Sum>
void neighbourhood_sum_with(const Geometry& g, const T* w, const T* y, T* out) {
  parallel_rows(g, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t j = 0; j < g.W; ++j) {
        query_sum<T, Sum>(g, w, y, row / g.H, row % g.H, j, out);
      }
    }
  });
}

// Sums of a block of queries that share one window (AxisClasses), kQ of them at a time: each key's
// kVecs vectors of channels are loaded once for kQ queries and each weight is a broadcast. Query by
// query, every term costs a broadcast and a load per multiply-add, and the loads set the pace.
template <typename T, int kVecs>
void shared_window_sums(const Geometry& g, const T* w, const T* y, int64_t bh, const int64_t* rows, int64_t nrows,
                        const int64_t* cols, int64_t ncols, T* out) {
  constexpr int L = kLanes<T>;
  constexpr int kQ = kVecs == 1 ? 8 : 4;  // at least 8 multiply-add chains in flight
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, C = g.dim, W = g.W, n = g.slots();
  const T* y_first = y + (bh * g.H * W + g.cols.key_start[cols[0]]) * C;
  const int64_t step = g.cols.dilation * C;
  const int64_t queries = nrows * ncols;
  for (int64_t q0 = 0; q0 < queries; q0 += kQ) {
    const T* wq[kQ];
    T* oq[kQ];
    for (int m = 0; m < kQ; ++m) {
      // A short last pass repeats its last query: the same values written twice to the same place.
      const int64_t q = std::min(q0 + m, queries - 1);
      const int64_t p = (bh * g.H + rows[q / ncols]) * W + cols[q % ncols];
      wq[m] = w + p * n;
      oq[m] = out + p * C;
    }
    Vec<T> acc[kQ][kVecs] = {};
    for (int64_t th = 0; th < kh; ++th) {
      const T* y_row = y_first + g.rows.key(rows[0], th) * W * C;
      for (int64_t tw = 0; tw < kw; ++tw) {
        Vec<T> key[kVecs];
        for (int v = 0; v < kVecs; ++v) {
          key[v] = load(y_row + tw * step + v * L);
        }
        const int64_t t = th * kw + tw;
        for (int m = 0; m < kQ; ++m) {
          const T weight = wq[m][t];
          for (int v = 0; v < kVecs; ++v) {
            acc[m][v] += weight * key[v];
          }
        }
      }
    }
    for (int m = 0; m < kQ; ++m) {
      for (int v = 0; v < kVecs; ++v) {
        store(oq[m] + v * L, acc[m][v]);
      }
    }
  }
}

// neighbourhood_sum for head dims of kVecs whole vectors: tasks are (plane, class of query rows) as
// in the logits; blocks of queries with one window go through shared_window_sums, the others query
// by query.
template <typename T, int kVecs>
void neighbourhood_sum_by_windows(const Geometry& g, const T* w, const T* y, T* out) {
  using Sum = ChannelSum<T, kVecs>;
  const AxisClasses row_classes(g.rows), col_classes(g.cols);
  const int64_t per_task = g.H / row_classes.count() * g.W * g.slots() * g.dim;
  parallel_blocks(g.batch_heads * row_classes.count(), items_per_block(per_task), per_task,
                  [&](int64_t begin, int64_t end) {
                    for (int64_t task = begin; task < end; ++task) {
                      const int64_t bh = task / row_classes.count(), ra = task % row_classes.count();
                      const int64_t* rows = row_classes.positions(ra);
                      const int64_t nrows = row_classes.size(ra);
                      for (int64_t cb = 0; cb < col_classes.count(); ++cb) {
                        const int64_t* cols = col_classes.positions(cb);
                        const int64_t ncols = col_classes.size(cb);
                        if (nrows * ncols >= kMinSharedQueries) {
                          shared_window_sums<T, kVecs>(g, w, y, bh, rows, nrows, cols, ncols, out);
                          continue;
                        }
                        for (int64_t a = 0; a < nrows; ++a) {
                          for (int64_t b = 0; b < ncols; ++b) {
                            query_sum<T, Sum>(g, w, y, bh, rows[a], cols[b], out);
                          }
                        }
                      }
                    }
                  });
}

template <typename T, typename Sum>
void inverse_sum_with(const Geometry& g, const T* w, const T* x, T* out) {
  const int64_t kw = g.cols.kernel, C = g.dim, W = g.W;
  parallel_rows(g, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bh = row / g.H, a = row % g.H;
      const int64_t plane = bh * g.H * W;
      for (int64_t b = 0; b < W; ++b) {
        Sum sum(out + (row * W + b) * C, C);
        for (int64_t pr = g.rows.inverse_offset[a]; pr < g.rows.inverse_offset[a + 1]; ++pr) {
          const int64_t i = g.rows.inverse_query[pr], ti = g.rows.inverse_slot[pr];
          const int64_t first = g.cols.inverse_offset[b];
          sum.add_terms(g.cols.inverse_offset[b + 1] - first, [&](int64_t t) {
            const int64_t pc = first + t, p = plane + i * W + g.cols.inverse_query[pc];
            return std::pair(w[p * g.slots() + ti * kw + g.cols.inverse_slot[pc]], x + p * C);
          });
        }
        sum.finish();
      }
    }
  });
}

template <int n>
using Int = std::integral_constant<int, n>;

// Calls vectorised(full, half, quarter) (integral constants: ChannelSum's shape) when C channels are
// full vectors plus at most a half and a quarter one, with up to four full vectors (or exactly
// eight), generic() otherwise.
template <typename T, typename Vectorised, typename Generic>
void by_channel_vectors(int64_t C, const Vectorised& vectorised, const Generic& generic) {
  // Without quarter vectors (two doubles a vector) the rows are whole vectors or generic.
  constexpr int64_t quarter = kLanes<T> % 4 == 0 ? kLanes<T> / 4 : kLanes<T>;
  if (C % quarter != 0 || C > 8 * kLanes<T>) {
    return generic();
  }
  const int64_t full = C / kLanes<T>, rest = (C % kLanes<T>) / quarter;
  auto with_rest = [&](auto vecs) {
    if constexpr (kLanes<T> % 4 != 0) {
      return vectorised(vecs, Int<0>{}, Int<0>{});
    } else {
      switch (rest) {
        case 0: return vectorised(vecs, Int<0>{}, Int<0>{});
        case 1: return vectorised(vecs, Int<0>{}, Int<1>{});
        case 2: return vectorised(vecs, Int<1>{}, Int<0>{});
        default: return vectorised(vecs, Int<1>{}, Int<1>{});
      }
    }
  };
  switch (full) {
    case 0: return with_rest(Int<0>{});
    case 1: return with_rest(Int<1>{});
    case 2: return with_rest(Int<2>{});
    case 3: return with_rest(Int<3>{});
    case 4: return with_rest(Int<4>{});
    case 8:
      if (rest == 0) {
        return vectorised(Int<8>{}, Int<0>{}, Int<0>{});
      }
      return generic();
    default: return generic();
  }
}

// ChannelSum of the shape by_channel_vectors chose.
template <typename T, typename Vecs, typename Half, typename Quarter>
using ChannelSumOf = ChannelSum<T, Vecs::value, Half::value != 0, Quarter::value != 0>;

template <typename T>
void neighbourhood_sum(const Geometry& g, const T* w, const T* y, T* out) {
  if (g.dim % kLanes<T> == 0 && g.dim >= kLanes<T> && g.dim <= 4 * kLanes<T>) {
    return with_count<4>(g.dim / kLanes<T>, [&](auto vecs) {
      neighbourhood_sum_by_windows<T, decltype(vecs)::value>(g, w, y, out);
    });
  }
  by_channel_vectors<T>(
      g.dim,
      [&](auto vecs, auto half, auto quarter) {
        neighbourhood_sum_with<T, ChannelSumOf<T, decltype(vecs), decltype(half), decltype(quarter)>>(g, w, y, out);
      },
      [&] { neighbourhood_sum_with<T, ChannelSumInMemory<T>>(g, w, y, out); });
}

template <typename T>
void inverse_sum(const Geometry& g, const T* w, const T* x, T* out) {
  by_channel_vectors<T>(
      g.dim,
      [&](auto vecs, auto half, auto quarter) {
        inverse_sum_with<T, ChannelSumOf<T, decltype(vecs), decltype(half), decltype(quarter)>>(g, w, x, out);
      },
      [&] { inverse_sum_with<T, ChannelSumInMemory<T>>(g, w, x, out); });
}

// drpb[head, bias_row(i) + th, bias_col(j) + tw] = sum over batch, i, j of dattn[.., i, j, th*kw + tw].
// First a partial table per (head, query row), then a sum over rows in a fixed order (double accumulators).
template <typename T>
void bias_gradient(const Geometry& g, const T* dattn, T* drpb) {
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, W = g.W, H = g.H;
  const int64_t bias_w = 2 * kw - 1, bias_h = 2 * kh - 1;
  const int64_t batch = g.batch_heads / g.heads;
  std::vector<double> partial(g.heads * H * kh * bias_w, 0.0);
  const int64_t per_task = batch * W * g.slots();
  parallel_blocks(g.heads * H, items_per_block(per_task), per_task, [&](int64_t begin, int64_t end) {
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
  parallel_blocks(g.heads, 1, H * kh * bias_w, [&](int64_t begin, int64_t end) {
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

namespace {

at::Tensor neighbourhood_logits(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                                int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w,
                                bool softmax) {
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
                                has_rpb ? bc.const_data_ptr<scalar_t>() : nullptr, softmax,
                                attn.mutable_data_ptr<scalar_t>());
  });
  return attn.to(q.scalar_type());
}

}  // namespace

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  return neighbourhood_logits(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w, false);
}

at::Tensor na2d_qk_softmax_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  return neighbourhood_logits(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w, true);
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
    neighbourhood_dot<scalar_t>(g, d, vc.const_data_ptr<scalar_t>(), nullptr, false,
                                dattn.mutable_data_ptr<scalar_t>());
    inverse_sum<scalar_t>(g, ac.const_data_ptr<scalar_t>(), d, dv.mutable_data_ptr<scalar_t>());
  });
  return {dattn.to(attn.scalar_type()), dv.to(v.scalar_type())};
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
