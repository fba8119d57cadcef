// Runtime CPU dispatch of the CPU kernels, the way ATen does it.
//
// The kernel sources (selective_scan_cpu.cpp, na2d_cpu.cpp, kernel_table.cpp)
// are compiled once per instruction-set variant, each time into its own
// namespace a2mamba::cpu::<variant> (CMake's A2MAMBA_CPU_VARIANT), with that
// variant's compiler flags. The entry points of ops.h (namespace a2mamba::cpu,
// compiled for the baseline) forward to the table of the variant selected at
// import: the best one the CPU supports, or the one A2MAMBA_CPU_CAPABILITY
// names (the Python package reads it).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace a2mamba::cpu {

// The entry points (as in ops.h, whose ATen/ATen.h would triple the variants' compile time).
#include "ops_signatures.inc"

// One variant's kernels, in the signatures of ops_signatures.inc.
struct KernelTable {
  const char* name;
  decltype(&selective_scan_state_fwd) scan_fwd;
  decltype(&selective_scan_state_bwd) scan_bwd;
  decltype(&na2d_qk_fwd) qk_fwd;
  decltype(&na2d_qk_softmax_fwd) qk_softmax_fwd;
  decltype(&na2d_qk_bwd) qk_bwd;
  decltype(&na2d_av_fwd) av_fwd;
  decltype(&na2d_av_bwd) av_bwd;
};

// Variants compiled into this build, from the least to the most demanding.
std::vector<std::string> compiled_capabilities();
// Those of them this CPU (and OS) can run.
std::vector<std::string> supported_capabilities();
// The variant the kernels use now.
std::string current_capability();
// Selects a variant by name; throws (ValueError in Python) for an unknown name,
// one not compiled in, or one this CPU cannot run.
void set_capability(const std::string& name);

}  // namespace a2mamba::cpu

// Each variant's table; defined by kernel_table.cpp compiled for that variant.
#define A2MAMBA_DECLARE_CPU_VARIANT(variant) \
  namespace a2mamba::cpu::variant {         \
  const KernelTable& kernel_table();        \
  }
A2MAMBA_DECLARE_CPU_VARIANT(cap_default)
A2MAMBA_DECLARE_CPU_VARIANT(cap_avx2)
A2MAMBA_DECLARE_CPU_VARIANT(cap_avx512)
#undef A2MAMBA_DECLARE_CPU_VARIANT
