// Thread-based emulation of the CUDA built-ins the a2mamba kernels use (one OS thread per CUDA thread,
// std::barrier for __syncthreads and warp shuffles). Only for checking kernel logic on a CPU.
//
// Blocks run one after another, in a shuffled order (a new order per launch unless a seed is set),
// so a result that depends on the order of blocks (atomics, a missing zeroing) varies between runs.
// Before each block, all shared memory is poisoned with 0xFF bytes (a NaN in every float type):
// dynamic shared memory, and the static `__shared__` arrays, which the emulation places in one
// linker section (a2mamba_emu_smem) so that it can overwrite them all.
// In bounds-check mode, dynamic shared memory is placed against an inaccessible guard page, at the
// end of it for even blocks and at the start for odd ones: an access past either end (to 16-byte
// granularity) stops the process with a message naming the block.
#pragma once
#define A2MAMBA_EMULATE_CUDA 1
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
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
struct Warp {
  std::unique_ptr<std::barrier<>> bar;
  alignas(16) unsigned char buf[32][16];
};
inline thread_local dim3 tid_, bid_;
inline dim3 bdim_, gdim_;
inline unsigned char* dyn_smem_ptr = nullptr;
inline std::vector<unsigned char> dyn_smem_plain;
inline std::vector<Warp>* warps;
inline std::barrier<>* block_bar;
inline std::mutex atomic_mutex;

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
template <class T>
T shfl(T v, int src) {
  Warp& w = (*warps)[tid_.x / 32];
  std::memcpy(w.buf[tid_.x % 32], &v, sizeof(T));
  w.bar->arrive_and_wait();
  T r;
  std::memcpy(&r, w.buf[src], sizeof(T));
  w.bar->arrive_and_wait();
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
inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }
template <class T> T atomicAdd(T* p, T v) {
  std::lock_guard<std::mutex> g(emu::atomic_mutex);
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

template <class... P, class... A>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem, A... args) {
  bdim_ = dim3(block);
  gdim_ = dim3(grid);
  const std::vector<unsigned> order = block_order(grid);
  for (unsigned i = 0; i < grid; ++i) {
    const unsigned b = order[i];
    current_block = b;
    if (bounds_check) {
      dyn_smem_ptr = guarded_smem(smem, b % 2 == 0);
    } else {
      dyn_smem_plain.resize(smem + 16);
      dyn_smem_ptr = dyn_smem_plain.data();
    }
    std::memset(dyn_smem_ptr, 0xFF, smem);  // NaN pattern: reads of unstaged shared memory show up
    poison_static_smem();
    std::barrier<> bb(block);
    std::vector<Warp> ws(block / 32);
    for (auto& w : ws) w.bar = std::make_unique<std::barrier<>>(32);
    warps = &ws;
    block_bar = &bb;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned t = 0; t < block; ++t) {
      threads.emplace_back([&, t] {
        tid_ = dim3(t);
        bid_ = dim3(b);
        kernel(args...);
        ws[t / 32].bar->arrive_and_drop();
        bb.arrive_and_drop();
      });
    }
    for (auto& th : threads) th.join();
  }
  current_block = -1;
}
}  // namespace emu
