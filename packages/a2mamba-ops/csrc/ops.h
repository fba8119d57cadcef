// Kernel entry points shared by the bindings and the backends.
//
// Contract with the Python layer (a2mamba_ops): every tensor argument is
// contiguous, on one device, and already validated (shapes, dtypes, sizes);
// kernels only TORCH_CHECK what would otherwise corrupt memory.
//
// Layouts:
//   scan:  u, delta (batch, D, L); A (D, N) float32; B (batch, G, N, L);
//          delta_bias (D,) float32 or undefined; h (batch, D, N, L) float32.
//          Channel d uses group d / (D / G).
//   na2d:  q, k, v, out (batch, heads, H, W, c); attn (batch, heads, H, W, kh*kw);
//          rpb (heads, 2*kh-1, 2*kw-1) or undefined.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace a2mamba {

namespace cpu {
#include "ops_signatures.inc"
}  // namespace cpu

#ifdef A2MAMBA_WITH_CUDA
// Same signatures and semantics, for CUDA tensors; they run on the current
// stream of the tensors' device and never synchronise the host.
namespace cuda {
#include "ops_signatures.inc"
}  // namespace cuda
#endif

}  // namespace a2mamba
