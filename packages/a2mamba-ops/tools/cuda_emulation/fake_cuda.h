// Emulation of the CUDA built-ins the a2mamba kernels use, for checking kernel logic on a CPU.
//
// Each CUDA thread of a block is a fiber (ucontext) on the calling OS thread: the block's fibers run
// round-robin, and __syncthreads and the warp shuffles are barriers at which a fiber yields until
// every live thread of its block (or warp) has arrived. Switching fibers costs far less than the OS
// threads this used to start for every block, so the checks can afford A2Mamba's real shapes. A
// barrier that some threads never reach (a __syncthreads in divergent code) stops the process with a
// message instead of hanging.
//
// Blocks run one after another, in a shuffled order (a new order per launch unless a seed is set),
// so a result that depends on the order of blocks (atomics, a missing zeroing) varies between runs.
// Before each block, all shared memory is poisoned with 0xFF bytes (a NaN in every float type):
// dynamic shared memory, and the static `__shared__` arrays, which the emulation places in one
// linker section (a2mamba_emu_smem) so that it can overwrite them all.
// In bounds-check mode, dynamic shared memory is placed against an inaccessible guard page, at the
// end of it for even blocks and at the start for odd ones: an access past either end (to 16-byte
// granularity) stops the process with a message naming the block; so does a misaligned 16-byte
// global access (load_pack / store_pack), which a GPU would fault on.
#pragma once
#define A2MAMBA_EMULATE_CUDA 1
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern "C" {
extern unsigned char __start_a2mamba_emu_smem[] __attribute__((weak));
extern unsigned char __stop_a2mamba_emu_smem[] __attribute__((weak));
}

namespace emu {
// A barrier among the live threads of a block or a warp (threads that have finished no longer count).
struct Barrier {
  unsigned live = 0;
  unsigned arrived = 0;
  uint64_t generation = 0;
};
struct Warp {
  Barrier bar;
  alignas(16) unsigned char buf[32][16];
};
inline dim3 tid_, bid_;  // of the running fiber: set by the scheduler before each switch
inline dim3 bdim_, gdim_;
inline unsigned char* dyn_smem_ptr = nullptr;
inline std::vector<unsigned char> dyn_smem_plain;
inline std::vector<Warp> warps;
inline Barrier block_bar;

// Fibers: one per CUDA thread of the running block.
constexpr size_t kFiberStack = 256 * 1024;
inline ucontext_t scheduler_context;
inline std::vector<ucontext_t> fiber_contexts;
inline std::vector<std::unique_ptr<unsigned char[]>> fiber_stacks;
inline std::vector<unsigned char> fiber_done;
inline unsigned current_fiber = 0;
inline std::function<void()> block_body;  // the kernel call of the running launch

// Settings from Python (check_kernels.py).
inline bool bounds_check = false;
inline uint64_t block_order_seed = 0;  // 0: a fresh order per launch
inline std::atomic<uint64_t> launch_counter{1};
inline std::atomic<int64_t> current_block{-1};

// ----------------------------------------------------------- guarded shared memory
inline unsigned char* guard_region = nullptr;
inline size_t guard_region_size = 0;
inline unsigned char* guard_low = nullptr;   // the inaccessible page before the data
inline unsigned char* guard_high = nullptr;  // the inaccessible page after it

inline void on_fault(int, siginfo_t* info, void*) {
  const auto* addr = static_cast<unsigned char*>(info->si_addr);
  const long page = sysconf(_SC_PAGESIZE);
  char message[200];
  const bool guarded = (guard_low && addr >= guard_low && addr < guard_low + page) ||
                       (guard_high && addr >= guard_high && addr < guard_high + page);
  const int n = std::snprintf(message, sizeof message, "emulation: %s in block %lld\n",
                              guarded ? "dynamic shared memory accessed out of bounds" : "segmentation fault",
                              static_cast<long long>(current_block.load()));
  if (n > 0) (void)!write(2, message, static_cast<size_t>(n));
  _exit(3);
}

// A 16-byte vector access must be 16-byte aligned on a GPU (else the kernel faults).
inline void require_aligned(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 16 == 0) return;
  std::fprintf(stderr, "emulation: misaligned %s at %p in block %lld\n", what, p,
               static_cast<long long>(current_block.load()));
  std::fflush(stderr);
  _exit(4);
}

inline unsigned char* guarded_smem(size_t bytes, bool at_end) {
  static bool handler_installed = false;
  if (!handler_installed) {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, nullptr);
    handler_installed = true;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t padded = (std::max<size_t>(bytes, 16) + 15) / 16 * 16;
  const size_t data = (padded + page - 1) / page * page;
  if (guard_region == nullptr || guard_region_size != data + 2 * page) {
    if (guard_region != nullptr) munmap(guard_region, guard_region_size);
    guard_region_size = data + 2 * page;
    void* region = mmap(nullptr, guard_region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) std::abort();
    guard_region = static_cast<unsigned char*>(region);
    guard_low = guard_region;
    guard_high = guard_region + page + data;
    mprotect(guard_low, page, PROT_NONE);
    mprotect(guard_high, page, PROT_NONE);
  }
  unsigned char* base = guard_region + page;
  return at_end ? base + data - padded : base;
}
}  // namespace emu

#define threadIdx (emu::tid_)
#define blockIdx (emu::bid_)
#define blockDim (emu::bdim_)
#define gridDim (emu::gdim_)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ __attribute__((section("a2mamba_emu_smem"))) static
#define __align__(n) alignas(n)
#define A2MAMBA_DYNAMIC_SMEM(name) unsigned char* name = emu::dyn_smem_ptr

inline int min(int a, int b) { return a < b ? a : b; }
inline float __fdividef(float a, float b) { return a / b; }
namespace emu {
inline void yield() { swapcontext(&fiber_contexts[current_fiber], &scheduler_context); }

// Arrive and wait until every live thread of the barrier's scope has arrived.
inline void arrive_and_wait(Barrier& bar) {
  const uint64_t generation = bar.generation;
  if (++bar.arrived == bar.live) {
    bar.arrived = 0;
    ++bar.generation;
  }
  while (bar.generation == generation) yield();
}

// A finished thread leaves the barrier; the others may be waiting for it alone.
inline void drop(Barrier& bar) {
  --bar.live;
  if (bar.arrived > 0 && bar.arrived == bar.live) {
    bar.arrived = 0;
    ++bar.generation;
  }
}

template <class T>
T shfl(T v, int src) {
  Warp& w = warps[tid_.x / 32];
  std::memcpy(w.buf[tid_.x % 32], &v, sizeof(T));
  arrive_and_wait(w.bar);
  T r;
  std::memcpy(&r, w.buf[src], sizeof(T));
  arrive_and_wait(w.bar);
  return r;
}
}  // namespace emu
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu::shfl(v, src & 31); }
template <class T> T __shfl_up_sync(unsigned, T v, unsigned d) {
  int l = emu::tid_.x % 32;
  return emu::shfl(v, l >= int(d) ? l - int(d) : l);
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned d) {
  int l = emu::tid_.x % 32;
  return emu::shfl(v, l + int(d) < 32 ? l + int(d) : l);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int m) { return emu::shfl(v, int(emu::tid_.x % 32) ^ m); }
inline void __syncthreads() { emu::arrive_and_wait(emu::block_bar); }
template <class T> T atomicAdd(T* p, T v) {  // fibers never run at the same time: no lock needed
  T o = *p;
  *p = o + v;
  return o;
}

namespace emu {
inline std::vector<unsigned> block_order(unsigned grid) {
  std::vector<unsigned> order(grid);
  std::iota(order.begin(), order.end(), 0u);
  const uint64_t seed = block_order_seed != 0 ? block_order_seed : launch_counter.fetch_add(1) * 0x9E3779B97F4A7C15ull;
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

inline void poison_static_smem() {
  if (__start_a2mamba_emu_smem != nullptr && __stop_a2mamba_emu_smem != nullptr)
    std::memset(__start_a2mamba_emu_smem, 0xFF, static_cast<size_t>(__stop_a2mamba_emu_smem - __start_a2mamba_emu_smem));
}

inline void fiber_main() {
  block_body();
  fiber_done[current_fiber] = 1;
  drop(warps[current_fiber / 32].bar);
  drop(block_bar);
  // returning resumes the scheduler (uc_link)
}

// Run the block's fibers round-robin until all have finished.
inline void run_block(unsigned block) {
  if (fiber_stacks.size() < block) {
    for (size_t i = fiber_stacks.size(); i < block; ++i) fiber_stacks.emplace_back(new unsigned char[kFiberStack]);
  }
  fiber_contexts.assign(block, ucontext_t{});
  fiber_done.assign(block, 0);
  for (unsigned t = 0; t < block; ++t) {
    getcontext(&fiber_contexts[t]);
    fiber_contexts[t].uc_stack.ss_sp = fiber_stacks[t].get();
    fiber_contexts[t].uc_stack.ss_size = kFiberStack;
    fiber_contexts[t].uc_link = &scheduler_context;
    makecontext(&fiber_contexts[t], fiber_main, 0);
  }
  block_bar = Barrier{block, 0, 0};
  warps.assign(block / 32, Warp{});
  for (auto& w : warps) w.bar.live = 32;
  unsigned finished = 0;
  while (finished < block) {
    const uint64_t progress = block_bar.generation + finished;
    uint64_t warp_progress = 0;
    for (const auto& w : warps) warp_progress += w.bar.generation;
    for (unsigned t = 0; t < block; ++t) {
      if (fiber_done[t]) continue;
      current_fiber = t;
      tid_ = dim3(t);
      swapcontext(&scheduler_context, &fiber_contexts[t]);
      finished += fiber_done[t];
    }
    uint64_t warp_after = 0;
    for (const auto& w : warps) warp_after += w.bar.generation;
    if (finished < block && block_bar.generation + finished == progress && warp_after == warp_progress) {
      std::fprintf(stderr, "emulation: block %lld deadlocked: %u of %u threads wait at a barrier the others never reach\n",
                   static_cast<long long>(current_block.load()), block_bar.arrived, block - finished);
      std::_Exit(4);
    }
  }
}

template <class... P, class... A>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem, A... args) {
  bdim_ = dim3(block);
  gdim_ = dim3(grid);
  block_body = [&] { kernel(args...); };
  const std::vector<unsigned> order = block_order(grid);
  for (unsigned i = 0; i < grid; ++i) {
    const unsigned b = order[i];
    current_block = b;
    bid_ = dim3(b);
    if (bounds_check) {
      dyn_smem_ptr = guarded_smem(smem, b % 2 == 0);
    } else {
      dyn_smem_plain.resize(smem + 16);
      dyn_smem_ptr = dyn_smem_plain.data();
    }
    std::memset(dyn_smem_ptr, 0xFF, smem);  // NaN pattern: reads of unstaged shared memory show up
    poison_static_smem();
    run_block(block);
  }
  block_body = nullptr;
  current_block = -1;
}
}  // namespace emu
