// How a kernel is launched, separated from where it runs.
//
// Every op body (buffer allocation and zeroing, kernel choice, grid, block and
// shared-memory sizes, the reductions after the kernels) is a template over a
// `Launch` callable, in the *_launch.cuh headers. The .cu files instantiate
// them with CudaLaunch (a real <<<>>> launch on the current stream); the CPU
// emulation in tools/cuda_emulation instantiates the same bodies with its own
// launcher, so what it checks is exactly what ships.
//
//   launch(kernel, plan, "what", args...)   runs kernel<<<plan>>>(args...)
#pragma once

#include "common.cuh"

namespace a2mamba::cuda_detail {

struct LaunchPlan {
  int64_t blocks = 0;
  int threads = 0;
  int64_t smem = 0;  // dynamic shared memory, bytes
};

#ifndef A2MAMBA_EMULATE_CUDA
struct CudaLaunch {
  cudaStream_t stream;
  int device;

  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), const LaunchPlan& plan, const char* what, const Args&... args) const {
    if (plan.blocks == 0) return;
    TORCH_CHECK(plan.blocks < (int64_t{1} << 31), what, ": too many blocks (", plan.blocks, ")");
    allow_dynamic_smem(kernel, plan.smem, device, what);
    kernel<<<static_cast<unsigned>(plan.blocks), plan.threads, static_cast<size_t>(plan.smem), stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

inline CudaLaunch cuda_launch_on(const at::Tensor& t) {
  return CudaLaunch{c10::cuda::getCurrentCUDAStream(t.get_device()).stream(), t.get_device()};
}
#endif

// Dispatch over the dtypes the adapters pass (float64 for checking).
#define A2MAMBA_DISPATCH_FLOATS(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

}  // namespace a2mamba::cuda_detail
