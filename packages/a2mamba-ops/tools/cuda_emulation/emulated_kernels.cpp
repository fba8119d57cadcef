// The CUDA ops of csrc/cuda, built by the host compiler against fake_cuda.h and run on CPU
// tensors. The op bodies (buffers, launch plans, kernel choice, reductions) are the very
// templates the .cu files instantiate (run_* in scan_launch.cuh and na2d_launch.cuh); only the
// launcher differs: EmuLaunch checks the plan against the hardware limits and runs the kernel
// in fake_cuda.h's threads. See check_kernels.py.
#include "fake_cuda.h"
#include <torch/extension.h>
#include "cuda/na2d_launch.cuh"
#include "cuda/scan_launch.cuh"

using namespace a2mamba::cuda_detail;

namespace {

// The smallest opt-in shared memory per block of the default architectures (sm_80: 163 KiB;
// sm_90 allows 227 KiB): a plan above it would fail to launch on an A100.
constexpr int64_t kMaxDynamicSmem = 163 * 1024;
constexpr int kMaxThreads = 1024;

struct EmuLaunch {
  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), const LaunchPlan& plan, const char* what, const Args&... args) const {
    if (plan.blocks == 0) return;
    TORCH_CHECK(plan.blocks > 0 && plan.blocks < (int64_t{1} << 31), what, ": grid of ", plan.blocks, " blocks");
    TORCH_CHECK(plan.threads > 0 && plan.threads <= kMaxThreads && plan.threads % kWarpSize == 0, what,
                ": block of ", plan.threads, " threads");
    TORCH_CHECK(plan.smem >= 0 && plan.smem <= kMaxDynamicSmem, what, ": ", plan.smem,
                " bytes of dynamic shared memory, more than sm_80 allows (", kMaxDynamicSmem, ")");
    emu::launch(kernel, static_cast<unsigned>(plan.blocks), static_cast<unsigned>(plan.threads),
                static_cast<size_t>(plan.smem), args...);
  }
};

// Dynamic shared memory (bytes) of each na2d kernel at one configuration, from the C++ launch plans.
pybind11::dict na_plans(int64_t H, int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                        at::ScalarType dtype) {
  const at::Tensor like = at::empty({1, 1, H, W, C}, at::TensorOptions().dtype(dtype));
  const NaShape s = make_na_shape(like, kh, kw, dh, dw, "plan");
  pybind11::dict out;
  A2MAMBA_DISPATCH_FLOATS(dtype, "plans", [&] {
    out["logits"] = logits_plan<scalar_t>(s).smem;
    out["aggregate"] = aggregate_plan<scalar_t>(s).smem;
    out["scatter"] = scatter_plan<scalar_t>(s).smem;
    out["threads"] = logits_plan<scalar_t>(s).threads;
  });
  return out;
}

// Proof that the emulation sees a barrier some threads never reach: half of each warp shuffles
// (a full-mask shuffle in divergent code) while the other half waits at __syncthreads.
__global__ void divergent_shuffle_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const EmuLaunch launch;
  m.def("scan_fwd", [launch](const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                             const std::optional<at::Tensor>& bias,
                             bool softplus) { return run_scan_fwd(launch, u, delta, A, B, bias, softplus); });
  m.def("scan_bwd", [launch](const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                             const at::Tensor& B, const std::optional<at::Tensor>& bias, bool softplus,
                             const at::Tensor& h, bool deterministic) {
    auto [du, ddelta, dA, dB, dbias] = run_scan_bwd(launch, dh, u, delta, A, B, bias, softplus, h, deterministic);
    return std::vector<at::Tensor>{du, ddelta, dA, dB, dbias};
  });
  m.def("qk_fwd", [launch](const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb, int64_t kh,
                           int64_t kw, int64_t dh, int64_t dw) { return run_na2d_qk_fwd(launch, q, k, rpb, kh, kw, dh, dw); });
  m.def("qk_bwd", [launch](const at::Tensor& dattn, const at::Tensor& q, const at::Tensor& k, bool has_rpb, int64_t kh,
                           int64_t kw, int64_t dh, int64_t dw) {
    auto [dq, dk, drpb] = run_na2d_qk_bwd(launch, dattn, q, k, has_rpb, kh, kw, dh, dw);
    return std::vector<at::Tensor>{dq, dk, drpb};
  });
  m.def("av_fwd", [launch](const at::Tensor& attn, const at::Tensor& v, int64_t kh, int64_t kw, int64_t dh,
                           int64_t dw) { return run_na2d_av_fwd(launch, attn, v, kh, kw, dh, dw); });
  m.def("av_bwd", [launch](const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v, int64_t kh, int64_t kw,
                           int64_t dh, int64_t dw) {
    auto [dattn, dv] = run_na2d_av_bwd(launch, dout, attn, v, kh, kw, dh, dw);
    return std::vector<at::Tensor>{dattn, dv};
  });
  m.def("na_plans", &na_plans);
  m.def("set_bounds_check", [](bool on) { emu::bounds_check = on; });
  m.def("run_divergent_shuffle", [] {
    std::vector<float> out(64);
    emu::launch(divergent_shuffle_kernel, 1u, 64u, size_t{0}, out.data());
  });
  m.def("set_block_order_seed", [](uint64_t seed) { emu::block_order_seed = seed; });
}
