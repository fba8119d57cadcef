"""The native kernels as torch.library custom ops.

Each op has a schema, a fake kernel (so torch.compile and meta tensors know
the output without running anything) and an autograd formula whose backward
is itself a custom op. The Python bodies pick the compiled kernels for the
tensors' device and adapt dtypes to what those kernels take.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._backends import kernel_module


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _na2d_dtype(backend: str, dtype: torch.dtype) -> torch.dtype:
    # The CPU kernels take float32, float64 and bfloat16; float16 on CPU runs in float32.
    if backend == "cpu" and dtype == torch.float16:
        return torch.float32
    return dtype


def _scan_inputs(backend: str, u, delta, A, B, delta_bias):
    state = _state_dtype(u.dtype)
    # CPU kernels read the sequence in the state precision; the CUDA kernels read
    # half inputs as they are and B in u's dtype, as mamba-ssm does.
    seq = state if backend == "cpu" else u.dtype
    u = u.to(seq).contiguous()
    delta = delta.to(seq).contiguous()
    B = B.to(seq).contiguous()
    A = A.to(state).contiguous()
    if delta_bias is not None:
        delta_bias = delta_bias.to(state).contiguous()
    return u, delta, A, B, delta_bias


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return t if t is not None else like.new_empty(0)


# --------------------------------------------------------------------------- scan


@torch.library.custom_op("a2mamba::selective_scan_state", mutates_args=())
def selective_scan_state_op(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, delta_bias: Tensor | None, delta_softplus: bool
) -> Tensor:
    backend, kernels = kernel_module(u.device)
    return kernels.selective_scan_state_fwd(*_scan_inputs(backend, u, delta, A, B, delta_bias), delta_softplus)


@selective_scan_state_op.register_fake
def _(u, delta, A, B, delta_bias, delta_softplus):
    batch, D, L = u.shape
    return u.new_empty((batch, D, A.shape[1], L), dtype=_state_dtype(u.dtype))


@torch.library.custom_op("a2mamba::selective_scan_state_backward", mutates_args=())
def selective_scan_state_backward_op(
    dh: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    h: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    backend, kernels = kernel_module(u.device)
    prepared = _scan_inputs(backend, u, delta, A, B, delta_bias)
    du, ddelta, dA, dB, dbias = kernels.selective_scan_state_bwd(
        dh.to(h.dtype).contiguous(), *prepared, delta_softplus, h.contiguous()
    )
    return (
        du.to(u.dtype),
        ddelta.to(delta.dtype),
        dA.to(A.dtype),
        dB.to(B.dtype),
        _or_empty(dbias.to(delta_bias.dtype) if delta_bias is not None else None, u),
    )


def _dense_like(t: Tensor) -> Tensor:
    # The kernels return fresh contiguous tensors whatever the inputs' strides;
    # the fake kernels must say so, or compiled graphs assume the wrong layout.
    return torch.empty_like(t, memory_format=torch.contiguous_format)


@selective_scan_state_backward_op.register_fake
def _(dh, u, delta, A, B, delta_bias, delta_softplus, h):
    bias_grad = _dense_like(delta_bias) if delta_bias is not None else u.new_empty(0)
    return _dense_like(u), _dense_like(delta), _dense_like(A), _dense_like(B), bias_grad


def _scan_setup_context(ctx, inputs, output):
    u, delta, A, B, delta_bias, delta_softplus = inputs
    ctx.delta_softplus = delta_softplus
    ctx.has_bias = delta_bias is not None
    ctx.save_for_backward(u, delta, A, B, delta_bias, output)


def _scan_backward(ctx, dh):
    u, delta, A, B, delta_bias, h = ctx.saved_tensors
    du, ddelta, dA, dB, dbias = selective_scan_state_backward_op(dh, u, delta, A, B, delta_bias, ctx.delta_softplus, h)
    return du, ddelta, dA, dB, (dbias if ctx.has_bias else None), None


selective_scan_state_op.register_autograd(_scan_backward, setup_context=_scan_setup_context)


# --------------------------------------------------------------------------- na2d qk


@torch.library.custom_op("a2mamba::na2d_qk", mutates_args=())
def na2d_qk_op(
    q: Tensor, k: Tensor, rpb: Tensor | None, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int
) -> Tensor:
    backend, kernels = kernel_module(q.device)
    dtype = _na2d_dtype(backend, q.dtype)
    rpb_c = rpb.to(dtype).contiguous() if rpb is not None else None
    attn = kernels.na2d_qk_fwd(
        q.to(dtype).contiguous(), k.to(dtype).contiguous(), rpb_c, kernel_h, kernel_w, dilation_h, dilation_w
    )
    return attn.to(q.dtype)


@na2d_qk_op.register_fake
def _(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w):
    return q.new_empty((*q.shape[:4], kernel_h * kernel_w))


@torch.library.custom_op("a2mamba::na2d_qk_backward", mutates_args=())
def na2d_qk_backward_op(
    dattn: Tensor,
    q: Tensor,
    k: Tensor,
    rpb: Tensor | None,
    kernel_h: int,
    kernel_w: int,
    dilation_h: int,
    dilation_w: int,
) -> tuple[Tensor, Tensor, Tensor]:
    backend, kernels = kernel_module(q.device)
    dtype = _na2d_dtype(backend, q.dtype)
    dq, dk, drpb = kernels.na2d_qk_bwd(
        dattn.to(dtype).contiguous(),
        q.to(dtype).contiguous(),
        k.to(dtype).contiguous(),
        rpb is not None,
        kernel_h,
        kernel_w,
        dilation_h,
        dilation_w,
    )
    return dq.to(q.dtype), dk.to(k.dtype), _or_empty(drpb.to(rpb.dtype) if rpb is not None else None, q)


@na2d_qk_backward_op.register_fake
def _(dattn, q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w):
    return _dense_like(q), _dense_like(k), (_dense_like(rpb) if rpb is not None else q.new_empty(0))


def _qk_setup_context(ctx, inputs, output):
    q, k, rpb, *window = inputs
    ctx.window = window
    ctx.has_rpb = rpb is not None
    ctx.save_for_backward(q, k, rpb)


def _qk_backward(ctx, dattn):
    q, k, rpb = ctx.saved_tensors
    dq, dk, drpb = na2d_qk_backward_op(dattn, q, k, rpb, *ctx.window)
    return dq, dk, (drpb if ctx.has_rpb else None), None, None, None, None


na2d_qk_op.register_autograd(_qk_backward, setup_context=_qk_setup_context)


# --------------------------------------------------------------------------- na2d qk + softmax


@torch.library.custom_op("a2mamba::na2d_qk_softmax", mutates_args=())
def na2d_qk_softmax_op(
    q: Tensor, k: Tensor, rpb: Tensor | None, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int
) -> Tensor:
    backend, kernels = kernel_module(q.device)
    dtype = _na2d_dtype(backend, q.dtype)
    rpb_c = rpb.to(dtype).contiguous() if rpb is not None else None
    attn = kernels.na2d_qk_softmax_fwd(
        q.to(dtype).contiguous(), k.to(dtype).contiguous(), rpb_c, kernel_h, kernel_w, dilation_h, dilation_w
    )
    return attn.to(q.dtype)


@na2d_qk_softmax_op.register_fake
def _(q, k, rpb, kernel_h, kernel_w, dilation_h, dilation_w):
    return q.new_empty((*q.shape[:4], kernel_h * kernel_w))


def _qk_softmax_setup_context(ctx, inputs, output):
    q, k, rpb, *window = inputs
    ctx.window = window
    ctx.has_rpb = rpb is not None
    ctx.save_for_backward(q, k, rpb, output)


def _qk_softmax_backward(ctx, dattn):
    q, k, rpb, attn = ctx.saved_tensors
    # The softmax's backward in float32 at least (PyTorch's own kernel: one pass, where the formula
    # p * (dp - sum(p * dp)) in tensor ops makes four), then the logits' backward kernel.
    compute = torch.promote_types(attn.dtype, torch.float32)
    dlogits = torch._softmax_backward_data(dattn.to(compute), attn.to(compute), -1, compute)
    dq, dk, drpb = na2d_qk_backward_op(dlogits.to(q.dtype), q, k, rpb, *ctx.window)
    return dq, dk, (drpb if ctx.has_rpb else None), None, None, None, None


na2d_qk_softmax_op.register_autograd(_qk_softmax_backward, setup_context=_qk_softmax_setup_context)


# --------------------------------------------------------------------------- na2d av


@torch.library.custom_op("a2mamba::na2d_av", mutates_args=())
def na2d_av_op(attn: Tensor, v: Tensor, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int) -> Tensor:
    backend, kernels = kernel_module(v.device)
    dtype = _na2d_dtype(backend, v.dtype)
    out = kernels.na2d_av_fwd(
        attn.to(dtype).contiguous(), v.to(dtype).contiguous(), kernel_h, kernel_w, dilation_h, dilation_w
    )
    return out.to(v.dtype)


@na2d_av_op.register_fake
def _(attn, v, kernel_h, kernel_w, dilation_h, dilation_w):
    return _dense_like(v)


@torch.library.custom_op("a2mamba::na2d_av_backward", mutates_args=())
def na2d_av_backward_op(
    dout: Tensor, attn: Tensor, v: Tensor, kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int
) -> tuple[Tensor, Tensor]:
    backend, kernels = kernel_module(v.device)
    dtype = _na2d_dtype(backend, v.dtype)
    dattn, dv = kernels.na2d_av_bwd(
        dout.to(dtype).contiguous(),
        attn.to(dtype).contiguous(),
        v.to(dtype).contiguous(),
        kernel_h,
        kernel_w,
        dilation_h,
        dilation_w,
    )
    return dattn.to(attn.dtype), dv.to(v.dtype)


@na2d_av_backward_op.register_fake
def _(dout, attn, v, kernel_h, kernel_w, dilation_h, dilation_w):
    return _dense_like(attn), _dense_like(v)


def _av_setup_context(ctx, inputs, output):
    attn, v, *window = inputs
    ctx.window = window
    ctx.save_for_backward(attn, v)


def _av_backward(ctx, dout):
    attn, v = ctx.saved_tensors
    dattn, dv = na2d_av_backward_op(dout, attn, v, *ctx.window)
    return dattn, dv, None, None, None, None


na2d_av_op.register_autograd(_av_backward, setup_context=_av_setup_context)
