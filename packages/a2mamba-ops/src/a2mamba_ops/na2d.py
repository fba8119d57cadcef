"""Public entry points of 2-D neighbourhood attention (NATTEN 0.17 semantics)."""

from __future__ import annotations

from torch import Tensor

from . import _backends, _validate
from ._ops import na2d_av_op, na2d_qk_op
from .reference import na2d_av_ref, na2d_qk_ref


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
