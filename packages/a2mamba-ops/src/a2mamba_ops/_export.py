"""Export-time decompositions of the native ops into plain PyTorch, for ONNX.

`torch.onnx.export(..., dynamo=True)` first captures the model with
`torch.export` (our custom ops stay single nodes, backed by their fake
kernels), then decomposes every op ONNX has no translation for, using
`torch._decomp.decomposition_table`. Registering the reference
implementations there lets the exporter turn `a2mamba::na2d_qk`, `a2mamba::na2d_qk_softmax`,
`a2mamba::na2d_av` and `a2mamba::selective_scan_state` into standard ONNX
operators (gathers, einsums, a chunked scan), so the default backends export
without `use_backend("reference")`.

The table is only read by tools that ask for every decomposition (the ONNX
exporter); `torch.export`, `torch.compile` and eager execution keep calling
the native kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops  # noqa: F401  (defines the torch.ops.a2mamba operators)
from .reference import na2d_av_ref, na2d_qk_ref, na2d_qk_softmax_ref, selective_scan_state_ref


def _na2d_qk(
    q: Tensor, k: Tensor, rpb: Tensor | None, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int
) -> Tensor:
    return na2d_qk_ref(q, k, (kernel_h, kernel_w), (dilation_h, dilation_w), rpb)


def _na2d_qk_softmax(
    q: Tensor, k: Tensor, rpb: Tensor | None, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int
) -> Tensor:
    return na2d_qk_softmax_ref(q, k, (kernel_h, kernel_w), (dilation_h, dilation_w), rpb)


def _na2d_av(attn: Tensor, v: Tensor, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int) -> Tensor:
    return na2d_av_ref(attn, v, (kernel_h, kernel_w), (dilation_h, dilation_w))


def _selective_scan_state(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Tensor | None, delta_softplus: bool
) -> Tensor:
    return selective_scan_state_ref(u, delta, A, B, delta_bias, delta_softplus)


DECOMPOSITIONS = {
    torch.ops.a2mamba.na2d_qk.default: _na2d_qk,
    torch.ops.a2mamba.na2d_qk_softmax.default: _na2d_qk_softmax,
    torch.ops.a2mamba.na2d_av.default: _na2d_av,
    torch.ops.a2mamba.selective_scan_state.default: _selective_scan_state,
}


def register() -> None:
    """Add the decompositions to PyTorch's global table (idempotent)."""
    table = torch._decomp.decomposition_table
    for op, fn in DECOMPOSITIONS.items():
        table.setdefault(op, fn)


register()
