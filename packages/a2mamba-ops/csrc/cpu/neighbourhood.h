// Per-axis neighbourhood tables of 2-D neighbourhood attention (NATTEN 0.17
// rules, spec section 5.2), shared by the CPU kernels.
//
// Along one axis of length L (kernel K, dilation d) query i reads the K keys
// key_start[i] + t*d, t = 0..K-1, and adds bias entry bias_start[i] + t. The
// inverse table lists, for every key position, the (query, slot) pairs that
// read it: it turns the backward scatter into a gather that each thread owns
// outright, so the key/value gradients need neither atomics nor locks.
#pragma once

#include "cpu/variant.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

struct AxisWindows {
  int64_t length = 0;
  int64_t kernel = 0;
  int64_t dilation = 0;
  std::vector<int64_t> key_start;   // (length,)
  std::vector<int64_t> bias_start;  // (length,)
  // CSR over key positions: readers of key a are entries inverse_offset[a] .. inverse_offset[a+1]-1,
  // ordered by ascending query, so every reduction over them has one fixed order.
  std::vector<int64_t> inverse_offset;  // (length + 1,)
  std::vector<int64_t> inverse_query;
  std::vector<int64_t> inverse_slot;

  AxisWindows(int64_t length_, int64_t kernel_, int64_t dilation_)
      : length(length_), kernel(kernel_), dilation(dilation_), key_start(length_), bias_start(length_) {
    // Smaller maps would index outside the tensor; Python validation rejects them first.
    TORCH_CHECK(kernel > 0 && kernel % 2 == 1 && dilation > 0 && length >= kernel * dilation,
                "na2d: axis of length ", length, " cannot hold kernel ", kernel, " with dilation ", dilation);
    const int64_t r = kernel / 2;
    const int64_t groups_ceil = (length + dilation - 1) / dilation;
    // Groups from `short_from` on hold one position fewer when length % dilation != 0.
    const int64_t short_from = dilation - (groups_ceil * dilation - length);
    for (int64_t i = 0; i < length; ++i) {
      const int64_t g = i % dilation;
      const int64_t j = i / dilation;
      const int64_t group_len = groups_ceil - (g >= short_from ? 1 : 0);
      const bool at_end = j + r >= group_len;
      const int64_t start = std::max<int64_t>(j - r, 0) + (at_end ? group_len - j - r - 1 : 0);
      key_start[i] = start * dilation + g;
      bias_start[i] = r + std::max<int64_t>(r - j, 0) + (at_end ? group_len - j - 1 - r : 0);
    }

    inverse_offset.assign(length + 1, 0);
    for (int64_t i = 0; i < length; ++i) {
      for (int64_t t = 0; t < kernel; ++t) {
        ++inverse_offset[key_start[i] + t * dilation + 1];
      }
    }
    for (int64_t a = 0; a < length; ++a) {
      inverse_offset[a + 1] += inverse_offset[a];
    }
    inverse_query.resize(inverse_offset[length]);
    inverse_slot.resize(inverse_offset[length]);
    std::vector<int64_t> fill(inverse_offset.begin(), inverse_offset.end() - 1);
    for (int64_t i = 0; i < length; ++i) {
      for (int64_t t = 0; t < kernel; ++t) {
        const int64_t pos = fill[key_start[i] + t * dilation]++;
        inverse_query[pos] = i;
        inverse_slot[pos] = t;
      }
    }
  }

  int64_t key(int64_t query, int64_t slot) const { return key_start[query] + slot * dilation; }
};

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
