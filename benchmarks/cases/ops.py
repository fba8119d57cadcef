"""Inputs and timed callables for each op, shape, mode and backend.

A *case* is a zero-argument callable that runs one op once (forward, or
forward then backward) under a forced backend, with inputs built beforehand so
that only the op is timed. Every benchmark tool builds its cases here, with
the bytes a call moves at least and, for the attention ops, the FLOPs it does.

FLOPs count the multiply-adds of the products (2 per multiply-add): `na2d_qk`
and `na2d_av` each do `2 * B * heads * H * W * K*K * head_dim` forward and
twice that backward (two gradients, each a product of the same size). The
bias add and the softmax are not counted: they are a few operations per
attention weight against `head_dim` multiply-adds per weight per product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .shapes import NA2DShape, ScanShape

OPS = ("na2d_qk", "na2d_av", "scan")
MODES = ("forward", "forward_backward")  # what the asv suites track
# The backward pass alone (its forward runs once when the case is built): the GPU
# bandwidth report states forward and backward separately.
BACKWARD = "backward"


def require_target(target: str) -> tuple[str, str]:
    """`'device:backend'` -> (device, backend); NotImplementedError (asv's skip) when it cannot run here."""
    import torch

    device, _, backend = target.partition(":")
    if device not in ("cpu", "cuda") or not backend:
        raise ValueError(f"target must be 'cpu:<backend>' or 'cuda:<backend>', got {target!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    if backend not in backends_for(device):
        raise NotImplementedError(f"backend {backend!r} is not available on {device} in this installation")
    return device, backend


def backends_for(device: str) -> list[str]:
    """The backends present in this installation that run tensors on `device`."""
    import a2mamba_ops

    present = a2mamba_ops.available_backends()
    wanted = {"cpu": ("reference", "cpu"), "cuda": ("reference", "cuda", "natten")}[device]
    return [b for b in wanted if b in present]


@dataclass
class Case:
    """A ready-to-run op call plus what a bandwidth figure needs."""

    run: Callable[[], object]
    bytes_moved: int  # a lower bound on the memory traffic of one call
    flops: int = 0  # the products' floating-point operations (attention ops; 0 for the scan)


def _inputs_na2d(op: str, shape: NA2DShape, device: str, dtype: torch.dtype, grad: bool):
    gen = torch.Generator().manual_seed(0)

    def randn(*size, scale=1.0):
        t = (torch.randn(*size, generator=gen) * scale).to(device=device, dtype=dtype)
        return t.requires_grad_(grad)

    if op == "na2d_qk":
        q = randn(*shape.qkv_shape, scale=shape.head_dim**-0.5)
        k = randn(*shape.qkv_shape)
        rpb = randn(*shape.rpb_shape, scale=0.02)
        return (q, k), {"rpb": rpb}, shape.attn_shape
    attn = torch.randn(*shape.attn_shape, generator=gen).softmax(-1).to(device=device, dtype=dtype)
    attn.requires_grad_(grad)
    v = randn(*shape.qkv_shape)
    return (attn, v), {}, shape.qkv_shape


def _inputs_scan(shape: ScanShape, device: str, dtype: torch.dtype, grad: bool):
    gen = torch.Generator().manual_seed(0)
    b, d, n, length = shape.batch, shape.dim, shape.state, shape.length
    u = torch.randn(b, d, length, generator=gen)
    delta = torch.randn(b, d, length, generator=gen) * 0.5
    # As the SSM initialises them: A = -exp(log(1..N)), bias = softplus^-1(dt) with dt in [1e-3, 0.1].
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    dt = torch.exp(torch.rand(d, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = dt + torch.log(-torch.expm1(-dt))
    B = torch.randn(b, n, length, generator=gen)
    tensors = [u.to(dtype), delta.to(dtype), A, B.to(dtype), bias]
    tensors = [t.to(device).requires_grad_(grad) for t in tensors]
    return tuple(tensors), {"delta_softplus": True}, (b, d, n, length)


def make_case(op: str, shape, mode: str, backend: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Case:
    """One call of `op` at `shape`; `mode` is 'forward', 'forward_backward' or 'backward'."""
    import a2mamba_ops

    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    if mode not in MODES + (BACKWARD,):
        raise ValueError(f"mode must be one of {MODES + (BACKWARD,)}, got {mode!r}")
    grad = mode != "forward"
    if op == "scan":
        args, kwargs, out_shape = _inputs_scan(shape, device, dtype, grad)
        fn = a2mamba_ops.selective_scan_state
    else:
        args, kwargs, out_shape = _inputs_na2d(op, shape, device, dtype, grad)
        fn = a2mamba_ops.na2d_qk if op == "na2d_qk" else a2mamba_ops.na2d_av
        kwargs = dict(kwargs, kernel_size=shape.kernel, dilation=shape.dilation)
    leaves = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor) and t.requires_grad]
    out_dtype = torch.float32 if op == "scan" and dtype != torch.float64 else dtype
    grad_out = torch.randn(out_shape, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=out_dtype)

    def forward():
        with a2mamba_ops.use_backend(backend):
            return fn(*args, **kwargs)

    def forward_backward():
        with a2mamba_ops.use_backend(backend):
            out = fn(*args, **kwargs)
            # autograd.grad rather than .backward(): no accumulation into .grad between calls.
            return torch.autograd.grad(out, leaves, grad_out)

    if mode == BACKWARD:
        with a2mamba_ops.use_backend(backend):
            saved_out = fn(*args, **kwargs)

        def backward():
            # The backend is picked again when autograd runs the backward kernels.
            with a2mamba_ops.use_backend(backend):
                return torch.autograd.grad(saved_out, leaves, grad_out, retain_graph=True)

        flops = product_flops(shape, 2) if op != "scan" else 0
        return Case(backward, _bytes_moved(args, kwargs, grad_out, forward=False, backward=True), flops)
    run = forward if mode == "forward" else forward_backward
    flops = product_flops(shape, 1 + 2 * grad) if op != "scan" else 0
    return Case(run, _bytes_moved(args, kwargs, grad_out, forward=True, backward=grad), flops)


def product_flops(shape: NA2DShape, products: int = 1) -> int:
    """FLOPs of `products` neighbourhood products (qk or av) at `shape`: 2 per multiply-add."""
    b, h, size, c, k = shape.batch, shape.heads, shape.size, shape.head_dim, shape.kernel
    return 2 * b * h * size * size * k * k * c * products


def make_attention_case(
    shape: NA2DShape, mode: str, backend: str, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> Case:
    """Neighbourhood attention as the model runs it: `na2d_qk_softmax` (logits with the positional
    bias and their softmax in one call), `na2d_av`; `mode` 'forward' or 'forward_backward'
    (gradients of q, k, v and the bias)."""
    import a2mamba_ops

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    grad = mode == "forward_backward"
    (q, k), bias, _ = _inputs_na2d("na2d_qk", shape, device, dtype, grad)
    rpb = bias["rpb"]
    v = torch.randn(shape.qkv_shape, generator=torch.Generator().manual_seed(2)).to(device=device, dtype=dtype)
    v.requires_grad_(grad)
    window = {"kernel_size": shape.kernel, "dilation": shape.dilation}
    grad_out = torch.randn(shape.qkv_shape, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)

    def forward():
        with a2mamba_ops.use_backend(backend):
            attn = a2mamba_ops.na2d_qk_softmax(q, k, rpb=rpb, **window)
            return a2mamba_ops.na2d_av(attn, v, **window)

    def forward_backward():
        out = forward()
        with a2mamba_ops.use_backend(backend):
            return torch.autograd.grad(out, (q, k, v, rpb), grad_out)

    # Bytes as for the single ops (inputs and output once; the attention weights between the
    # products are not counted); FLOPs: two products forward, four more backward.
    return Case(
        forward_backward if grad else forward,
        _bytes_moved((q, k, v, rpb), {}, grad_out, forward=True, backward=grad),
        product_flops(shape, 6 if grad else 2),
    )


def _bytes_moved(args, kwargs, out: torch.Tensor, forward: bool, backward: bool) -> int:
    """Forward: inputs read once and the output written once. Backward: the output
    gradient and the inputs read, one gradient per input written."""
    inputs = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
    in_bytes = sum(t.numel() * t.element_size() for t in inputs)
    out_bytes = out.numel() * out.element_size()
    return (in_bytes + out_bytes if forward else 0) + (out_bytes + 2 * in_bytes if backward else 0)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
