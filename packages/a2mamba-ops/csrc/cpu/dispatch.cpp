// The CPU entry points of ops.h: pick a variant at first use, forward to it.
// Compiled for the baseline only, like everything outside the variant objects.
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <atomic>

#include "cpu/capability.h"

namespace a2mamba::cpu {
namespace {

struct Variant {
  const char* name;
  const KernelTable& (*table)();
  bool (*cpu_runs)();
};

#if defined(__x86_64__) || defined(__i386__)
// libgcc's and compiler-rt's feature bits already include the OS check (XGETBV): AVX and
// AVX-512 are reported only where the kernel saves the ymm/zmm state. maybe_unused: a build without
// the variants (A2MAMBA_CPU_DISPATCH=OFF) references neither.
[[maybe_unused]] bool cpu_runs_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
[[maybe_unused]] bool cpu_runs_avx512() {
  __builtin_cpu_init();
  return cpu_runs_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif
bool cpu_runs_default() { return true; }

// From the least to the most demanding; the last one the CPU runs is the default choice.
const Variant kVariants[] = {
    {"default", &cap_default::kernel_table, &cpu_runs_default},
#ifdef A2MAMBA_CPU_HAS_AVX2
    {"avx2", &cap_avx2::kernel_table, &cpu_runs_avx2},
#endif
#ifdef A2MAMBA_CPU_HAS_AVX512
    {"avx512", &cap_avx512::kernel_table, &cpu_runs_avx512},
#endif
};

const KernelTable* best_supported() {
  const KernelTable* best = nullptr;
  for (const Variant& v : kVariants) {
    if (v.cpu_runs()) {
      best = &v.table();
    }
  }
  return best;
}

std::atomic<const KernelTable*>& selected() {
  static std::atomic<const KernelTable*> table{best_supported()};
  return table;
}

const KernelTable& kernels() { return *selected().load(std::memory_order_acquire); }

}  // namespace

std::vector<std::string> compiled_capabilities() {
  std::vector<std::string> names;
  for (const Variant& v : kVariants) {
    names.emplace_back(v.name);
  }
  return names;
}

std::vector<std::string> supported_capabilities() {
  std::vector<std::string> names;
  for (const Variant& v : kVariants) {
    if (v.cpu_runs()) {
      names.emplace_back(v.name);
    }
  }
  return names;
}

std::string current_capability() { return kernels().name; }

void set_capability(const std::string& name) {
  for (const Variant& v : kVariants) {
    if (name == v.name) {
      TORCH_CHECK_VALUE(v.cpu_runs(), "CPU capability '", name, "' is compiled in but this CPU cannot run it");
      selected().store(&v.table(), std::memory_order_release);
      return;
    }
  }
  TORCH_CHECK_VALUE(false, "CPU capability must be one of ", c10::Join(", ", compiled_capabilities()),
                    " in this build, got '", name, "'");
}

at::Tensor selective_scan_state_fwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                    const at::Tensor& B, const std::optional<at::Tensor>& delta_bias,
                                    bool delta_softplus) {
  return kernels().scan_fwd(u, delta, A, B, delta_bias, delta_softplus);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_state_bwd(
    const at::Tensor& dh, const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const std::optional<at::Tensor>& delta_bias, bool delta_softplus, const at::Tensor& h) {
  return kernels().scan_bwd(dh, u, delta, A, B, delta_bias, delta_softplus, h);
}

at::Tensor na2d_qk_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                       int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  return kernels().qk_fwd(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w);
}

at::Tensor na2d_qk_softmax_fwd(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& rpb,
                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h, int64_t dilation_w) {
  return kernels().qk_softmax_fwd(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> na2d_qk_bwd(const at::Tensor& dattn, const at::Tensor& q,
                                                           const at::Tensor& k, bool has_rpb, int64_t kernel_h,
                                                           int64_t kernel_w, int64_t dilation_h,
                                                           int64_t dilation_w) {
  return kernels().qk_bwd(dattn, q, k, has_rpb, kernel_h, kernel_w, dilation_h, dilation_w);
}

at::Tensor na2d_av_fwd(const at::Tensor& attn, const at::Tensor& v, int64_t kernel_h, int64_t kernel_w,
                       int64_t dilation_h, int64_t dilation_w) {
  return kernels().av_fwd(attn, v, kernel_h, kernel_w, dilation_h, dilation_w);
}

std::tuple<at::Tensor, at::Tensor> na2d_av_bwd(const at::Tensor& dout, const at::Tensor& attn, const at::Tensor& v,
                                               int64_t kernel_h, int64_t kernel_w, int64_t dilation_h,
                                               int64_t dilation_w) {
  return kernels().av_bwd(dout, attn, v, kernel_h, kernel_w, dilation_h, dilation_w);
}

}  // namespace a2mamba::cpu
