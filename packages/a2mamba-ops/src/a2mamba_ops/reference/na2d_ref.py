"""2-D neighbourhood attention with NATTEN 0.17 semantics, in plain PyTorch.

The whole op is a gather: for every query pixel and every window slot we know,
per axis, which key row/column it reads and which bias entry it adds. Those
integer tables are built once (`neighbourhood_indices`) with vectorised tensor
arithmetic, then QK and AV are one gather and one reduction each, so autograd
gives every gradient (q, k, v, attn and the bias table) for free.
"""

from __future__ import annotations

import torch
from torch import Tensor


def neighbourhood_indices(length: int, kernel: int, dilation: int, device=None) -> tuple[Tensor, Tensor]:
    """Key positions and bias positions along one axis.

    Returns `(keys, bias)`, both `(length, kernel)` int64: query `i` attends to
    positions `keys[i]` and adds the bias entries `bias[i]` (indices into a table
    of size `2*kernel - 1`). Windows are shifted inward at the borders, and with
    dilation `d` a query only sees its own residue class `i mod d` (a2mamba-models docs/architecture.md §6.1).
    """
    r = kernel // 2
    i = torch.arange(length, device=device)
    g = i % dilation  # dilation group
    j = i // dilation  # position inside the group
    groups_ceil = -(-length // dilation)
    # Groups at the end are one shorter when `length` is not a multiple of `dilation`.
    short_from = dilation - (groups_ceil * dilation - length)
    group_len = groups_ceil - (g >= short_from).long()

    at_end = j + r >= group_len
    start = (j - r).clamp(min=0) + torch.where(at_end, group_len - j - r - 1, 0)
    bias_start = r + (r - j).clamp(min=0) + torch.where(at_end, group_len - j - 1 - r, 0)

    t = torch.arange(kernel, device=device)
    keys = (start[:, None] + t) * dilation + g[:, None]
    bias = bias_start[:, None] + t
    return keys, bias


def _gather_windows(x: Tensor, kernel: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """(B, n, H, W, c) -> (B, n, H, W, kh, kw, c): every pixel's key window."""
    H, W = x.shape[2], x.shape[3]
    rows, _ = neighbourhood_indices(H, kernel[0], dilation[0], x.device)
    cols, _ = neighbourhood_indices(W, kernel[1], dilation[1], x.device)
    return x[:, :, rows[:, None, :, None], cols[None, :, None, :], :]


def na2d_qk_ref(
    q: Tensor,
    k: Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    rpb: Tensor | None = None,
) -> Tensor:
    """Attention logits `(B, n, H, W, kh*kw)` of each query with its neighbourhood."""
    B, n, H, W, _ = q.shape
    kh, kw = kernel_size
    keys = _gather_windows(k, kernel_size, dilation)
    attn = torch.einsum("bnhwc,bnhwxyc->bnhwxy", q, keys)
    if rpb is not None:
        _, bias_rows = neighbourhood_indices(H, kh, dilation[0], q.device)
        _, bias_cols = neighbourhood_indices(W, kw, dilation[1], q.device)
        bias = rpb[:, bias_rows[:, None, :, None], bias_cols[None, :, None, :]]  # (n, H, W, kh, kw)
        attn = attn + bias.to(attn.dtype)
    return attn.reshape(B, n, H, W, kh * kw)


def na2d_qk_softmax_ref(
    q: Tensor,
    k: Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    rpb: Tensor | None = None,
) -> Tensor:
    """Attention weights `(B, n, H, W, kh*kw)`: softmax of `na2d_qk_ref` over each window, logits and
    softmax in float32 (float64 for float64 inputs), rounded once to `q`'s dtype."""
    compute = torch.promote_types(q.dtype, torch.float32)
    bias = rpb.to(compute) if rpb is not None else None
    logits = na2d_qk_ref(q.to(compute), k.to(compute), kernel_size, dilation, bias)
    return torch.softmax(logits, dim=-1).to(q.dtype)


def na2d_av_ref(
    attn: Tensor,
    v: Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> Tensor:
    """Weighted sum `(B, n, H, W, c)` of each query's neighbourhood values."""
    B, n, H, W, _ = v.shape
    kh, kw = kernel_size
    values = _gather_windows(v, kernel_size, dilation)
    return torch.einsum("bnhwxy,bnhwxyc->bnhwc", attn.reshape(B, n, H, W, kh, kw), values)
