// Python bindings: a2mamba_ops._C. The Python package registers these as
// torch.library custom ops (schema, fake kernel, autograd); this module only
// exposes the raw per-device kernels and what they were built with.
// pybind11 with torch's Tensor casters and the version macro, not <torch/extension.h> (the whole
// C++ frontend, which this module never uses and which doubles its compile time).
#include <torch/csrc/utils/pybind.h>
#include <torch/version.h>

#include "cpu/capability.h"
#include "ops.h"

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = TORCH_VERSION;
#ifdef A2MAMBA_WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = A2MAMBA_CUDA_ARCHS;
#else
  info["cuda"] = false;
  info["cuda_archs"] = "";
#endif
#if defined(__clang__)
  info["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = "gcc " __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  return info;
}

// One backend's kernels under the same names; a macro because the backends
// are namespaces, not types.
#define BIND_KERNELS(module, ns)                                          \
  do {                                                                    \
    auto sub = (module);                                                  \
    sub.def("selective_scan_state_fwd", &ns::selective_scan_state_fwd); \
    sub.def("selective_scan_state_bwd", &ns::selective_scan_state_bwd); \
    sub.def("na2d_qk_fwd", &ns::na2d_qk_fwd);                           \
    sub.def("na2d_qk_softmax_fwd", &ns::na2d_qk_softmax_fwd);           \
    sub.def("na2d_qk_bwd", &ns::na2d_qk_bwd);                           \
    sub.def("na2d_av_fwd", &ns::na2d_av_fwd);                           \
    sub.def("na2d_av_bwd", &ns::na2d_av_bwd);                           \
  } while (false)

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "a2mamba-ops native kernels (use a2mamba_ops, not this module)";
  m.def("build_info", &build_info);

  auto cpu = m.def_submodule("cpu", "native CPU kernels");
  BIND_KERNELS(cpu, a2mamba::cpu);
  // Runtime dispatch between the instruction-set variants of the CPU kernels.
  cpu.def("compiled_capabilities", &a2mamba::cpu::compiled_capabilities);
  cpu.def("supported_capabilities", &a2mamba::cpu::supported_capabilities);
  cpu.def("current_capability", &a2mamba::cpu::current_capability);
  cpu.def("set_capability", &a2mamba::cpu::set_capability);
#ifdef A2MAMBA_WITH_CUDA
  BIND_KERNELS(m.def_submodule("cuda", "CUDA kernels"), a2mamba::cuda);
#endif
}
