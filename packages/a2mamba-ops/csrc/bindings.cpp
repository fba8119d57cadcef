// Python bindings: a2mamba_ops._C. The Python package registers these as
// torch.library custom ops (schema, fake kernel, autograd); this module only
// exposes the raw per-device kernels and what they were built with.
#include <torch/extension.h>

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

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "a2mamba-ops native kernels (use a2mamba_ops, not this module)";
  m.def("build_info", &build_info);

  auto cpu = m.def_submodule("cpu", "native CPU kernels");
  cpu.def("selective_scan_state_fwd", &a2mamba::cpu::selective_scan_state_fwd);
  cpu.def("selective_scan_state_bwd", &a2mamba::cpu::selective_scan_state_bwd);
  cpu.def("na2d_qk_fwd", &a2mamba::cpu::na2d_qk_fwd);
  cpu.def("na2d_qk_bwd", &a2mamba::cpu::na2d_qk_bwd);
  cpu.def("na2d_av_fwd", &a2mamba::cpu::na2d_av_fwd);
  cpu.def("na2d_av_bwd", &a2mamba::cpu::na2d_av_bwd);

#ifdef A2MAMBA_WITH_CUDA
  auto cuda = m.def_submodule("cuda", "CUDA kernels");
  cuda.def("selective_scan_state_fwd", &a2mamba::cuda::selective_scan_state_fwd);
  cuda.def("selective_scan_state_bwd", &a2mamba::cuda::selective_scan_state_bwd);
  cuda.def("na2d_qk_fwd", &a2mamba::cuda::na2d_qk_fwd);
  cuda.def("na2d_qk_bwd", &a2mamba::cuda::na2d_qk_bwd);
  cuda.def("na2d_av_fwd", &a2mamba::cuda::na2d_av_fwd);
  cuda.def("na2d_av_bwd", &a2mamba::cuda::na2d_av_bwd);
#endif
}
