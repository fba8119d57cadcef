"""Public entry points of 2-D neighbourhood attention (NATTEN 0.17 semantics)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _backends, _validate
from ._ops import na2d_av_op, na2d_qk_op, na2d_qk_softmax_op
from .reference import na2d_av_ref, na2d_qk_ref, na2d_qk_softmax_ref


def na2d_qk(q: Tensor, k: Tensor, kernel_size, dilation=1, rpb: Tensor | None = None) -> Tensor:
    """Logits of each query with its `kernel_size` neighbourhood, plus the bias.

    `q`, `k`: `(batch, heads, H, W, dim)`; returns `(batch, heads, H, W, kh*kw)`,
    slot `t_h*kw + t_w`. `kernel_size` (odd) and `dilation` are an int or a
    `(rows, cols)` pair; each axis needs at least `kernel*dilation` pixels.
    `rpb`: `(heads, 2*kh-1, 2*kw-1)` relative position bias. Windows shift
    inward at the borders exactly as NATTEN 0.17's `na2d_qk` does.
    """
    kernel, dil = _validate.check_na2d_qk(q, k, kernel_size, dilation, rpb)
    backend = _backends.select(q.device)
    if backend == "reference":
        return na2d_qk_ref(q, k, kernel, dil, rpb)
    if backend == "natten":
        return _backends._natten_functional().na2d_qk(q, k, kernel_size=kernel, dilation=dil, rpb=rpb)
    if rpb is not None:
        rpb = rpb.to(q.dtype)  # one dtype per kernel call; the cast is differentiable
    return na2d_qk_op(q, k, rpb, kernel[0], kernel[1], dil[0], dil[1])


def na2d_qk_softmax(q: Tensor, k: Tensor, kernel_size, dilation=1, rpb: Tensor | None = None) -> Tensor:
    """Attention weights: `softmax(na2d_qk(q, k, kernel_size, dilation, rpb), dim=-1)` in one call.

    Arguments and result as for `na2d_qk`. The logits and the softmax are computed in float32
    (float64 for float64 inputs) and rounded once to `q`'s dtype; the CPU kernel normalises each
    window while its logits are still in cache, which saves a whole pass over the attention
    tensor. The CUDA backend runs its logits kernel, then PyTorch's softmax in float32 (for half
    inputs the logits are rounded to `q`'s dtype in between).
    """
    kernel, dil = _validate.check_na2d_qk(q, k, kernel_size, dilation, rpb)
    backend = _backends.select(q.device)
    if backend == "reference":
        return na2d_qk_softmax_ref(q, k, kernel, dil, rpb)
    if backend == "natten":
        logits = _backends._natten_functional().na2d_qk(q, k, kernel_size=kernel, dilation=dil, rpb=rpb)
        return logits.softmax(-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
    if rpb is not None:
        rpb = rpb.to(q.dtype)
    return na2d_qk_softmax_op(q, k, rpb, kernel[0], kernel[1], dil[0], dil[1])


def na2d_av(attn: Tensor, v: Tensor, kernel_size, dilation=1) -> Tensor:
    """Attention-weighted sum of each query's neighbourhood values.

    `attn`: `(batch, heads, H, W, kh*kw)` (as from `na2d_qk`, usually softmaxed);
    `v`: `(batch, heads, H, W, dim)`; returns `(batch, heads, H, W, dim)`.
    """
    kernel, dil = _validate.check_na2d_av(attn, v, kernel_size, dilation)
    backend = _backends.select(v.device)
    if backend == "reference":
        return na2d_av_ref(attn, v, kernel, dil)
    if backend == "natten":
        return _backends._natten_functional().na2d_av(attn, v, kernel_size=kernel, dilation=dil)
    return na2d_av_op(attn, v, kernel[0], kernel[1], dil[0], dil[1])
