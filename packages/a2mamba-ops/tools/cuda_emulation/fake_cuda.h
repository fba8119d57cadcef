// Thread-based emulation of the CUDA built-ins the a2mamba kernels use (one OS thread per CUDA thread,
// std::barrier for __syncthreads and warp shuffles). Only for checking kernel logic on a CPU.
#pragma once
#define A2MAMBA_EMULATE_CUDA 1
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
namespace emu {
struct Warp {
  std::unique_ptr<std::barrier<>> bar;
  alignas(16) unsigned char buf[32][16];
};
inline thread_local dim3 tid_, bid_;
inline dim3 bdim_, gdim_;
inline std::vector<unsigned char> dyn_smem;
inline std::vector<Warp>* warps;
inline std::barrier<>* block_bar;
inline std::mutex atomic_mutex;
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
#define __shared__ static
#define __align__(n) alignas(n)
#define A2MAMBA_DYNAMIC_SMEM(name) unsigned char* name = emu::dyn_smem.data()

inline int min(int a, int b) { return a < b ? a : b; }
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
template <class... P, class... A>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, size_t smem, A... args) {
  bdim_ = dim3(block);
  gdim_ = dim3(grid);
  for (unsigned b = 0; b < grid; ++b) {
    dyn_smem.assign(smem + 16, 0xFF);  // NaN pattern: reads of unstaged shared memory show up
    std::barrier<> bb(block);
    std::vector<Warp> ws(block / 32);
    for (auto& w : ws) w.bar = std::make_unique<std::barrier<>>(32);
    warps = &ws;
    block_bar = &bb;
    std::vector<std::thread> threads;
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
}
}  // namespace emu
