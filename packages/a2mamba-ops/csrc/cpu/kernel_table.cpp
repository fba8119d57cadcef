// The kernel table of one instruction-set variant (compiled once per variant,
// see capability.h). The variant's kernels are declared here in its namespace.
#include "cpu/capability.h"

#ifndef A2MAMBA_CPU_VARIANT
#error "kernel_table.cpp is compiled once per variant with A2MAMBA_CPU_VARIANT defined"
#endif

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

#include "ops_signatures.inc"

const KernelTable& kernel_table() {
  static const KernelTable table{A2MAMBA_CPU_VARIANT_NAME, &selective_scan_state_fwd, &selective_scan_state_bwd,
                                 &na2d_qk_fwd,             &na2d_qk_softmax_fwd,      &na2d_qk_bwd,
                                 &na2d_av_fwd,             &na2d_av_bwd};
  return table;
}

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
