"""Argument checks shared by every backend.

Kernels trust their inputs; these checks are what stands between a user's
mistake and a segfault or a silently wrong answer, so every message names the
argument and says what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def require_tensor(name: str, t, *, rank: int | None = None, floating: bool = True) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if floating and t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if rank is not None and t.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {_shape(t)}")


def require_same_device(**tensors: Tensor | None) -> None:
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise RuntimeError(f"all tensors must be on one device, got {listing}")


def pair(name: str, value) -> tuple[int, int]:
    """An int or a pair of ints -> (for rows, for columns)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if isinstance(value, Sequence) and len(value) == 2 and all(is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_window(kernel_size, dilation, H: int, W: int) -> tuple[tuple[int, int], tuple[int, int]]:
    kernel = pair("kernel_size", kernel_size)
    dil = pair("dilation", dilation)
    for k in kernel:
        if k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size!r}")
    for d in dil:
        if d < 1:
            raise ValueError(f"dilation must be at least 1, got {dilation!r}")
    for axis, size, k, d in (("height", H, kernel[0], dil[0]), ("width", W, kernel[1], dil[1])):
        if size < k * d:
            raise ValueError(
                f"feature map {axis} {size} is smaller than kernel_size*dilation = {k}*{d} = {k * d}; "
                "neighbourhood attention needs at least that many pixels along each axis"
            )
    return kernel, dil


def check_na2d_qk(q, k, kernel_size, dilation, rpb):
    require_tensor("q", q, rank=5)
    require_tensor("k", k, rank=5)
    if q.shape != k.shape:
        raise ValueError(f"k must have the shape of q (batch, heads, H, W, dim) = {_shape(q)}, got {_shape(k)}")
    if q.dtype != k.dtype:
        raise TypeError(f"q and k must have the same dtype, got q {q.dtype} and k {k.dtype}")
    require_same_device(q=q, k=k, rpb=rpb)
    kernel, dil = check_window(kernel_size, dilation, q.shape[2], q.shape[3])
    if rpb is not None:
        require_tensor("rpb", rpb, rank=3)
        expected = (q.shape[1], 2 * kernel[0] - 1, 2 * kernel[1] - 1)
        if tuple(rpb.shape) != expected:
            raise ValueError(f"rpb must have shape (heads, 2*kh-1, 2*kw-1) = {expected}, got {_shape(rpb)}")
    return kernel, dil


def check_na2d_av(attn, v, kernel_size, dilation):
    require_tensor("attn", attn, rank=5)
    require_tensor("v", v, rank=5)
    require_same_device(attn=attn, v=v)
    kernel, dil = check_window(kernel_size, dilation, v.shape[2], v.shape[3])
    expected = (*v.shape[:4], kernel[0] * kernel[1])
    if tuple(attn.shape) != expected:
        raise ValueError(
            f"attn must have shape (batch, heads, H, W, kh*kw) = {expected} to match v {_shape(v)}, got {_shape(attn)}"
        )
    if attn.dtype != v.dtype:
        raise TypeError(f"attn and v must have the same dtype, got attn {attn.dtype} and v {v.dtype}")
    return kernel, dil


def check_scan(u, delta, A, B, delta_bias) -> None:
    require_tensor("u", u, rank=3)
    require_tensor("delta", delta, rank=3)
    require_tensor("A", A, rank=2)
    require_tensor("B", B)
    if delta.shape != u.shape:
        raise ValueError(f"delta must have the shape of u (batch, D, L) = {_shape(u)}, got {_shape(delta)}")
    if u.dtype != delta.dtype:
        raise TypeError(f"u and delta must have the same dtype, got u {u.dtype} and delta {delta.dtype}")
    require_same_device(u=u, delta=delta, A=A, B=B, delta_bias=delta_bias)
    batch, D, L = u.shape
    if L == 0 or D == 0:
        raise ValueError(f"u must have at least one channel and one step, got shape {_shape(u)}")
    if A.shape[0] != D:
        raise ValueError(f"A must have shape (D, N) with D = {D}, got {_shape(A)}")
    N = A.shape[1]
    if B.dim() == 3:
        expected, G = (batch, N, L), 1
    elif B.dim() == 4:
        G = B.shape[1]
        expected = (batch, G, N, L)
        if G == 0 or D % G:
            raise ValueError(f"B's group count G = {G} must divide D = {D} (B is (batch, G, N, L))")
    else:
        raise ValueError(f"B must be (batch, N, L) or (batch, G, N, L), got shape {_shape(B)}")
    if tuple(B.shape) != expected:
        raise ValueError(f"B must have shape {expected} to match u {_shape(u)} and A {_shape(A)}, got {_shape(B)}")
    if delta_bias is not None:
        require_tensor("delta_bias", delta_bias, rank=1)
        if delta_bias.shape[0] != D:
            raise ValueError(f"delta_bias must have shape (D,) = ({D},), got {_shape(delta_bias)}")
