// The three kernel shapes behind na2d_qk and na2d_av, forward and backward.
//
//   logits:    out[i, t]  = sum_c X[i, c] * Y[key(i, t), c]  (+ rpb)     qk fwd, av bwd (dattn)
//   aggregate: out[i, c]  = sum_t A[i, t] * Y[key(i, t), c]              av fwd, qk bwd (dq)
//   scatter:   out[j, c]  = sum_{(i, t): key(i, t) = j} A[i, t] X[i, c]  qk bwd (dk), av bwd (dv)
//
// Geometry (spec 5.2): along an axis of length L with dilation d, the pixels
// of residue g = i mod d form a group of length Lg, and inside a group the
// attention is undilated with window start s(j) = clamp(j - K/2, 0, Lg - K)
// and bias start s(j) - j + K - 1. So every block works on one group of one
// (batch, head): a tile of kTile x kTile group positions, whose neighbours
// (or, for scatter, whose attending queries) form a small rectangle that is
// staged in shared memory, a chunk of channels at a time. The queries of a
// tile have window starts that grow by at most one per step, so the key
// rectangle of a tile is at most kTile + K - 1 long per axis; the queries that
// attend a key tile span at most kTile + 2K - 2.
#pragma once

#include "common.cuh"

namespace a2mamba::cuda_detail {

constexpr int kTile = 8;  // tile edge in group positions
constexpr int kTilePixels = kTile * kTile;
constexpr int kNaThreads = 256;
constexpr int kMaxKernel = 13;
constexpr int kMaxSlotsPerLane = (kMaxKernel * kMaxKernel + kWarpSize - 1) / kWarpSize;  // 6
static_assert(kNaThreads / kWarpSize == kTile, "the logits kernel gives each warp one tile column");
static_assert(kNaThreads % kTilePixels == 0, "aggregate/scatter split the channels in kNaThreads / kTilePixels groups");

// Channels staged per pass: 16 floats or 8 doubles (64 bytes per pixel).
template <typename S>
constexpr int channel_chunk() {
  return 64 / static_cast<int>(sizeof(S));
}

struct NaShape {
  int64_t batch_heads;
  int heads, H, W, C;  // C: head dim
  int kh, kw, dh, dw;
  int tiles_h, tiles_w;  // tiles per group along each axis (of the longest group)
  int64_t tiles;         // per (batch, head): dh * dw * tiles_h * tiles_w
};

__host__ __device__ __forceinline__ int group_length(int length, int dilation, int group) {
  return (length - group + dilation - 1) / dilation;
}
__device__ __forceinline__ int window_start(int j, int group_len, int kernel) {
  const int s = j - kernel / 2;
  const int last = group_len - kernel;
  return s < 0 ? 0 : (s > last ? last : s);
}
// First query position whose window reaches key position j (window starts grow by <= 1).
__device__ __forceinline__ int first_query_of(int j, int group_len, int kernel) {
  int i = j - kernel + 1;
  if (i < 0) i = 0;
  while (window_start(i, group_len, kernel) + kernel - 1 < j) ++i;
  return i;
}
// Last query position whose window starts at or before key position j.
__device__ __forceinline__ int last_query_of(int j, int group_len, int kernel) {
  int i = j + kernel - 1;
  if (i > group_len - 1) i = group_len - 1;
  while (window_start(i, group_len, kernel) > j) --i;
  return i;
}

// Which (batch*head, group, tile) a block handles.
struct NaBlock {
  int64_t bh;
  int gh, gw;          // dilation group (residue) per axis
  int len_h, len_w;    // group lengths
  int j0h, j0w;        // first group position of the tile
  int count_h, count_w;  // positions of the tile inside the group
  bool empty;
};

__device__ __forceinline__ NaBlock locate_block(const NaShape& s) {
  // 32-bit arithmetic (the launcher keeps the grid below 2^31 blocks): a 64-bit
  // division is a subroutine call, which costs the kernel a stack frame.
  NaBlock blk;
  const unsigned tiles = static_cast<unsigned>(s.tiles);
  const unsigned tile = blockIdx.x % tiles;
  blk.bh = blockIdx.x / tiles;
  const int tx = static_cast<int>(tile % static_cast<unsigned>(s.tiles_w));
  const int ty = static_cast<int>((tile / static_cast<unsigned>(s.tiles_w)) % static_cast<unsigned>(s.tiles_h));
  const unsigned group = tile / static_cast<unsigned>(s.tiles_w * s.tiles_h);
  blk.gw = static_cast<int>(group % static_cast<unsigned>(s.dw));
  blk.gh = static_cast<int>(group / static_cast<unsigned>(s.dw));
  blk.len_h = group_length(s.H, s.dh, blk.gh);
  blk.len_w = group_length(s.W, s.dw, blk.gw);
  blk.j0h = ty * kTile;
  blk.j0w = tx * kTile;
  blk.empty = blk.j0h >= blk.len_h || blk.j0w >= blk.len_w;
  blk.count_h = min(kTile, blk.len_h - blk.j0h);
  blk.count_w = min(kTile, blk.len_w - blk.j0w);
  return blk;
}

// Linear pixel index (within all of batch*heads) of group position (jh, jw).
__device__ __forceinline__ int64_t pixel_of(const NaShape& s, const NaBlock& blk, int jh, int jw) {
  return (blk.bh * s.H + blk.gh + int64_t{jh} * s.dh) * s.W + blk.gw + int64_t{jw} * s.dw;
}

// Stages channels [c0, c0 + CC) of a rectangle of group positions into
// shared memory, row stride `Stride` (by default CC + 1: odd, so lanes reading
// different pixels hit different banks); channels past C read as zero.
template <typename T, int CC, int Stride = CC + 1>
__device__ __forceinline__ void stage_rect(acc_t<T>* dst, const T* __restrict__ src, const NaShape& s,
                                           const NaBlock& blk, int h0, int w0, int rows, int cols, int c0) {
  const int total = rows * cols * CC;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int cc = idx % CC;
    const int p = idx / CC;
    const int y = p / cols, x = p % cols;
    const int c = c0 + cc;
    dst[p * Stride + cc] =
        c < s.C ? load_acc(src + pixel_of(s, blk, h0 + y, w0 + x) * s.C + c) : acc_t<T>(0);
  }
}

// ------------------------------------------------------------------ logits
// Warp w handles tile column w; for each of the tile's rows it holds the
// query's kSlots * 32 logit slots (slot t = lane + 32 * k) in registers.
// At least two blocks per SM: without that bound ptxas squeezes the kernel
// into 48-64 registers and spills (a stack frame) to reach 4 blocks.
template <typename T, int kSlots>
__global__ void __launch_bounds__(kNaThreads, 2)
    na_logits_kernel(NaShape s, const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ rpb,
                     T* __restrict__ out) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  A2MAMBA_DYNAMIC_SMEM(smem_raw);
  S* x_s = reinterpret_cast<S*>(smem_raw);  // kTilePixels * CC
  S* y_s = x_s + kTilePixels * CC;          // rect * (CC + 1)

  const NaBlock blk = locate_block(s);
  if (blk.empty) return;
  const int KK = s.kh * s.kw;
  const int lane = threadIdx.x % kWarpSize;
  const int col = threadIdx.x / kWarpSize;  // tile column of this warp
  const int rect_h0 = window_start(blk.j0h, blk.len_h, s.kh);
  const int rect_w0 = window_start(blk.j0w, blk.len_w, s.kw);
  const int rect_h = window_start(blk.j0h + blk.count_h - 1, blk.len_h, s.kh) - rect_h0 + s.kh;
  const int rect_w = window_start(blk.j0w + blk.count_w - 1, blk.len_w, s.kw) - rect_w0 + s.kw;
  const bool col_ok = col < blk.count_w;
  const int jw = blk.j0w + col;
  const int start_w = col_ok ? window_start(jw, blk.len_w, s.kw) : rect_w0;

  S acc[kTile][kSlots];
#pragma unroll
  for (int r = 0; r < kTile; ++r)
#pragma unroll
    for (int k = 0; k < kSlots; ++k) acc[r][k] = S(0);

  for (int c0 = 0; c0 < s.C; c0 += CC) {
    // the query tile, unpadded (a warp reads one query's channels: a broadcast)
    for (int idx = threadIdx.x; idx < kTilePixels * CC; idx += blockDim.x) {
      const int cc = idx % CC, q = idx / CC;
      const int qy = q / kTile, qx = q % kTile, c = c0 + cc;
      x_s[idx] = (qy < blk.count_h && qx < blk.count_w && c < s.C)
                     ? load_acc(x + pixel_of(s, blk, blk.j0h + qy, blk.j0w + qx) * s.C + c)
                     : S(0);
    }
    stage_rect<T, CC>(y_s, y, s, blk, rect_h0, rect_w0, rect_h, rect_w, c0);
    __syncthreads();
    if (col_ok) {
#pragma unroll
      for (int r = 0; r < kTile; ++r) {
        if (r < blk.count_h) {
          const int start_h = window_start(blk.j0h + r, blk.len_h, s.kh);
          int offset[kSlots];
#pragma unroll
          for (int k = 0; k < kSlots; ++k) {
            const int t = lane + k * kWarpSize;
            const int th = t / s.kw, tw = t % s.kw;
            offset[k] = t < KK ? ((start_h - rect_h0 + th) * rect_w + start_w - rect_w0 + tw) * (CC + 1) : 0;
          }
          const S* xq = x_s + (r * kTile + col) * CC;
#pragma unroll
          for (int cc = 0; cc < CC; ++cc) {
            const S xv = xq[cc];
#pragma unroll
            for (int k = 0; k < kSlots; ++k) acc[r][k] += xv * y_s[offset[k] + cc];
          }
        }
      }
    }
    __syncthreads();
  }

  if (!col_ok) return;
  const int head = static_cast<int>(static_cast<unsigned>(blk.bh) % static_cast<unsigned>(s.heads));
  const int bias_w = start_w - jw + s.kw - 1;
#pragma unroll
  for (int r = 0; r < kTile; ++r) {
    if (r < blk.count_h) {
      const int jh = blk.j0h + r;
      const int bias_h = window_start(jh, blk.len_h, s.kh) - jh + s.kh - 1;
      T* dst = out + pixel_of(s, blk, jh, jw) * KK;
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        const int t = lane + k * kWarpSize;
        if (t < KK) {
          S v = acc[r][k];
          if (rpb != nullptr) {
            const int th = t / s.kw, tw = t % s.kw;
            v += load_acc(rpb + (int64_t{head} * (2 * s.kh - 1) + bias_h + th) * (2 * s.kw - 1) + bias_w + tw);
          }
          dst[t] = static_cast<T>(v);
        }
      }
    }
  }
}

// --------------------------------------------------------------- aggregate
// Thread = (query of the tile, group of CC / 4 channels). The tile's weights
// A (kTilePixels x KK) stay in shared memory for all channel chunks.
// With bias_partial != nullptr the block also writes, for its queries, the
// sum of A per relative-position-bias entry (the drpb contribution of the
// tile) in a fixed order; empty blocks write zeros.
template <typename T>
__global__ void __launch_bounds__(kNaThreads)
    na_aggregate_kernel(NaShape s, const T* __restrict__ a, const T* __restrict__ y, T* __restrict__ out,
                        acc_t<T>* __restrict__ bias_partial) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  constexpr int kGroups = kNaThreads / kTilePixels;  // 4
  constexpr int kPerThread = CC / kGroups;
  A2MAMBA_DYNAMIC_SMEM(smem_raw);
  const int KK = s.kh * s.kw;
  S* a_s = reinterpret_cast<S*>(smem_raw);  // kTilePixels * KK
  S* y_s = a_s + kTilePixels * KK;          // rect * (CC + 1)

  const NaBlock blk = locate_block(s);
  const int bias_entries = (2 * s.kh - 1) * (2 * s.kw - 1);
  if (blk.empty) {
    if (bias_partial != nullptr)
      for (int e = threadIdx.x; e < bias_entries; e += blockDim.x) bias_partial[blockIdx.x * int64_t{bias_entries} + e] = S(0);
    return;
  }
  const int rect_h0 = window_start(blk.j0h, blk.len_h, s.kh);
  const int rect_w0 = window_start(blk.j0w, blk.len_w, s.kw);
  const int rect_h = window_start(blk.j0h + blk.count_h - 1, blk.len_h, s.kh) - rect_h0 + s.kh;
  const int rect_w = window_start(blk.j0w + blk.count_w - 1, blk.len_w, s.kw) - rect_w0 + s.kw;

  for (int idx = threadIdx.x; idx < kTilePixels * KK; idx += blockDim.x) {
    const int t = idx % KK, q = idx / KK;
    const int qy = q / kTile, qx = q % kTile;
    a_s[idx] = (qy < blk.count_h && qx < blk.count_w)
                   ? load_acc(a + pixel_of(s, blk, blk.j0h + qy, blk.j0w + qx) * KK + t)
                   : S(0);
  }

  const int q = threadIdx.x % kTilePixels;
  const int group = threadIdx.x / kTilePixels;
  const int qy = q / kTile, qx = q % kTile;
  const bool q_ok = qy < blk.count_h && qx < blk.count_w;
  const int start_h = q_ok ? window_start(blk.j0h + qy, blk.len_h, s.kh) - rect_h0 : 0;
  const int start_w = q_ok ? window_start(blk.j0w + qx, blk.len_w, s.kw) - rect_w0 : 0;
  const S* a_q = a_s + q * KK;

  for (int c0 = 0; c0 < s.C; c0 += CC) {
    stage_rect<T, CC>(y_s, y, s, blk, rect_h0, rect_w0, rect_h, rect_w, c0);
    __syncthreads();
    if (q_ok) {
      S acc[kPerThread];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) acc[j] = S(0);
      int t = 0;
      for (int th = 0; th < s.kh; ++th) {
        const S* y_row = y_s + ((start_h + th) * rect_w + start_w) * (CC + 1) + group * kPerThread;
        for (int tw = 0; tw < s.kw; ++tw, ++t) {
          const S av = a_q[t];
#pragma unroll
          for (int j = 0; j < kPerThread; ++j) acc[j] += av * y_row[tw * (CC + 1) + j];
        }
      }
      T* dst = out + pixel_of(s, blk, blk.j0h + qy, blk.j0w + qx) * s.C;
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) {
        const int c = c0 + group * kPerThread + j;
        if (c < s.C) dst[c] = static_cast<T>(acc[j]);
      }
    }
    __syncthreads();
  }

  if (bias_partial != nullptr) {
    __syncthreads();  // a_s complete even when the channel loop did not run (head dim 0)
    // Entry (eh, ew) of the table collects A[q, th*kw + tw] of every query q
    // with bias start (ph, pw) and (th, tw) = (eh - ph, ew - pw) inside the
    // window; queries are visited in a fixed order, so the sum is reproducible.
    const int table_w = 2 * s.kw - 1;
    for (int e = threadIdx.x; e < bias_entries; e += blockDim.x) {
      const int eh = e / table_w, ew = e % table_w;
      S sum = S(0);
      for (int r = 0; r < blk.count_h; ++r) {
        const int jh = blk.j0h + r;
        const int th = eh - (window_start(jh, blk.len_h, s.kh) - jh + s.kh - 1);
        if (th < 0 || th >= s.kh) continue;
        for (int c = 0; c < blk.count_w; ++c) {
          const int jw = blk.j0w + c;
          const int tw = ew - (window_start(jw, blk.len_w, s.kw) - jw + s.kw - 1);
          if (tw < 0 || tw >= s.kw) continue;
          sum += a_s[(r * kTile + c) * KK + th * s.kw + tw];
        }
      }
      bias_partial[blockIdx.x * int64_t{bias_entries} + e] = sum;
    }
  }
}

// ----------------------------------------------------------------- scatter
// The block owns a tile of key positions; X of every query that attends one
// of them is staged (chunk of channels at a time); A is read from global
// memory (each entry once per chunk and channel group). Thread = (key, group
// of kPerThread channels, one 16-byte pack). Which window slot of query row
// ih (column iw) holds key row jh (column jw) comes from small tables built
// once per block, so the inner loop is a load of A, one packed shared-memory
// load of X and kPerThread FMAs, with no window arithmetic.
constexpr int kScatterMaxRect = kTile + 2 * kMaxKernel - 2;

// Row stride of the scatter's staged X: rows stay 16-byte aligned (a thread's
// channels load as one pack) and 80 bytes apart, so the eight lanes of a
// quarter warp reading consecutive query rows hit distinct banks.
template <typename S>
constexpr int scatter_stride() {
  return channel_chunk<S>() + 16 / static_cast<int>(sizeof(S));
}

template <typename T>
__global__ void __launch_bounds__(kNaThreads)
    na_scatter_kernel(NaShape s, const T* __restrict__ a, const T* __restrict__ x, T* __restrict__ out) {
  using S = acc_t<T>;
  constexpr int CC = channel_chunk<S>();
  constexpr int kStride = scatter_stride<S>();
  constexpr int kGroups = kNaThreads / kTilePixels;
  constexpr int kPerThread = CC / kGroups;
  static_assert(kPerThread * sizeof(S) == sizeof(Pack16<S>), "a thread's channels are one 16-byte pack");
  A2MAMBA_DYNAMIC_SMEM(smem_raw);
  S* x_s = reinterpret_cast<S*>(smem_raw);  // rect * kStride
  // slot_h[ky][r]: window row of query row rect_h0 + r that holds key row j0h + ky (used only
  // where that query attends the key); slot_w likewise for columns.
  __shared__ int slot_h[kTile][kScatterMaxRect];
  __shared__ int slot_w[kTile][kScatterMaxRect];

  const NaBlock blk = locate_block(s);
  if (blk.empty) return;
  const int KK = s.kh * s.kw;
  const int rect_h0 = first_query_of(blk.j0h, blk.len_h, s.kh);
  const int rect_w0 = first_query_of(blk.j0w, blk.len_w, s.kw);
  const int rect_h = last_query_of(blk.j0h + blk.count_h - 1, blk.len_h, s.kh) - rect_h0 + 1;
  const int rect_w = last_query_of(blk.j0w + blk.count_w - 1, blk.len_w, s.kw) - rect_w0 + 1;
  for (int idx = threadIdx.x; idx < kTile * kScatterMaxRect; idx += blockDim.x) {
    const int k = idx / kScatterMaxRect, r = idx % kScatterMaxRect;
    slot_h[k][r] = r < rect_h ? blk.j0h + k - window_start(rect_h0 + r, blk.len_h, s.kh) : 0;
    slot_w[k][r] = r < rect_w ? blk.j0w + k - window_start(rect_w0 + r, blk.len_w, s.kw) : 0;
  }

  const int key = threadIdx.x % kTilePixels;
  const int group = threadIdx.x / kTilePixels;
  const int ky = key / kTile, kx = key % kTile;
  const bool key_ok = ky < blk.count_h && kx < blk.count_w;
  const int jh = blk.j0h + ky, jw = blk.j0w + kx;
  const int q_h0 = key_ok ? first_query_of(jh, blk.len_h, s.kh) : 0;
  const int q_h1 = key_ok ? last_query_of(jh, blk.len_h, s.kh) : -1;
  const int q_w0 = key_ok ? first_query_of(jw, blk.len_w, s.kw) : 0;
  const int q_w1 = key_ok ? last_query_of(jw, blk.len_w, s.kw) : -1;
  const int64_t a_step = int64_t{s.dw} * KK;  // A entries from one query column to the next

  for (int c0 = 0; c0 < s.C; c0 += CC) {
    stage_rect<T, CC, kStride>(x_s, x, s, blk, rect_h0, rect_w0, rect_h, rect_w, c0);
    __syncthreads();
    if (key_ok) {
      S acc[kPerThread];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) acc[j] = S(0);
      for (int ih = q_h0; ih <= q_h1; ++ih) {
        const int rh = ih - rect_h0;
        const T* a_q = a + pixel_of(s, blk, ih, q_w0) * KK + slot_h[ky][rh] * s.kw;
        const S* x_q = x_s + (rh * rect_w + q_w0 - rect_w0) * kStride + group * kPerThread;
        const int* slot_q = &slot_w[kx][q_w0 - rect_w0];
        for (int i = 0; i <= q_w1 - q_w0; ++i) {
          const S av = load_acc(a_q + slot_q[i]);
          const Pack16<S> xv = *reinterpret_cast<const Pack16<S>*>(x_q);
#pragma unroll
          for (int j = 0; j < kPerThread; ++j) acc[j] += av * xv.v[j];
          a_q += a_step;
          x_q += kStride;
        }
      }
      T* dst = out + pixel_of(s, blk, jh, jw) * s.C;
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) {
        const int c = c0 + group * kPerThread + j;
        if (c < s.C) dst[c] = static_cast<T>(acc[j]);
      }
    }
    __syncthreads();
  }
}

}  // namespace a2mamba::cuda_detail
