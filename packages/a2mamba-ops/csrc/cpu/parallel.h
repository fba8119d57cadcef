// Work sharing of the CPU kernels over ATen's thread pool, built to survive
// shared cores.
//
// at::parallel_for hands each thread one fixed slice: when another process
// holds one of the cores, every other thread waits (spinning) for the slowest
// slice, and a parallel region can take longer than running on one thread.
// Here the work is cut into blocks that the threads take from a shared counter
// as they go, so a thread on a busy core simply takes fewer blocks. Which thread
// runs a block never changes what the block computes: results stay identical
// for every thread count and schedule.
#pragma once

#include "cpu/variant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

// Below this many multiply-adds per thread a parallel region costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 16;
// Blocks of about this much work: several per thread on large problems, so the counter can balance them.
constexpr int64_t kBlockWork = 1 << 15;

// Items per block when each item costs `work_per_item` multiply-adds.
inline int64_t items_per_block(int64_t work_per_item) {
  return std::max<int64_t>(1, kBlockWork / std::max<int64_t>(1, work_per_item));
}

// body(begin, end) over [0, items) in blocks of `per_block` items.
template <typename F>
void parallel_blocks(int64_t items, int64_t per_block, int64_t work_per_item, const F& body) {
  if (items <= 0) {
    return;
  }
  const int64_t blocks = (items + per_block - 1) / per_block;
  const int64_t total_work = items * std::max<int64_t>(1, work_per_item);
  const int64_t threads =
      std::min<int64_t>({static_cast<int64_t>(at::get_num_threads()), blocks, total_work / kMinWorkPerThread});
  if (threads <= 1 || at::in_parallel_region()) {
    body(0, items);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t block = next.fetch_add(1, std::memory_order_relaxed); block < blocks;
         block = next.fetch_add(1, std::memory_order_relaxed)) {
      body(block * per_block, std::min(items, (block + 1) * per_block));
    }
  });
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
