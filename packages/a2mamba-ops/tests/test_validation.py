"""Bad input gets a clear error naming the argument, on every backend, never a crash."""

from __future__ import annotations

import pytest
import torch

from a2mamba_ops import available_backends, na2d_av, na2d_qk, selective_scan_state, use_backend

BACKENDS = [b for b in available_backends() if b in ("reference", "cpu")]


def qkv(B=1, n=2, H=9, W=9, c=4, dtype=torch.float32):
    return [torch.randn(B, n, H, W, c, dtype=dtype) for _ in range(3)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    with use_backend(request.param):
        yield request.param


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda q, k, v: na2d_qk(q[0], k, 3), r"q must have 5 dimensions"),
        (lambda q, k, v: na2d_qk(q, k[..., :2], 3), r"k must have the shape of q"),
        (lambda q, k, v: na2d_qk(q, k, 4), r"kernel_size must be odd"),
        (lambda q, k, v: na2d_qk(q, k, (3, 2)), r"kernel_size must be odd"),
        (lambda q, k, v: na2d_qk(q, k, 3, dilation=0), r"dilation must be at least 1"),
        (lambda q, k, v: na2d_qk(q, k, 5, dilation=2), r"height 9 is smaller than kernel_size\*dilation"),
        (lambda q, k, v: na2d_qk(q, k, 11), r"smaller than kernel_size\*dilation = 11\*1"),
        (lambda q, k, v: na2d_qk(q, k, 3, rpb=torch.zeros(2, 3, 3)), r"rpb must have shape \(heads, 2\*kh-1"),
        (lambda q, k, v: na2d_qk(q, k, 3, rpb=torch.zeros(1, 5, 5)), r"rpb must have shape"),
        (lambda q, k, v: na2d_qk(q, k, 3, rpb=torch.zeros(2, 5)), r"rpb must have 3 dimensions"),
        (lambda q, k, v: na2d_qk(q, k.double(), 3), r"q and k must have the same dtype"),
        (lambda q, k, v: na2d_qk(q.int(), k.int(), 3), r"q must be float16, bfloat16, float32 or float64"),
        (lambda q, k, v: na2d_qk(q, k, "3"), r"kernel_size must be an int or a pair"),
        (lambda q, k, v: na2d_qk(q, k, (3, 3, 3)), r"kernel_size must be an int or a pair"),
        (lambda q, k, v: na2d_qk(q.numpy(), k, 3), r"q must be a torch.Tensor"),
        (lambda q, k, v: na2d_av(torch.zeros(1, 2, 9, 9, 10), v, 3), r"attn must have shape .* kh\*kw"),
        (lambda q, k, v: na2d_av(torch.zeros(1, 1, 9, 9, 9), v, 3), r"attn must have shape"),  # heads differ
        (lambda q, k, v: na2d_av(torch.zeros(1, 2, 9, 9, 9).double(), v, 3), r"attn and v must have the same dtype"),
        (lambda q, k, v: na2d_av(torch.zeros(1, 2, 9, 9, 9), v[..., 0], 3), r"v must have 5 dimensions"),
    ],
)
def test_na2d_bad_inputs(backend, make, match):
    q, k, v = qkv()
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        make(q, k, v)


def scan_args(batch=2, D=4, N=1, L=10):
    return dict(
        u=torch.randn(batch, D, L),
        delta=torch.randn(batch, D, L),
        A=-torch.rand(D, N),
        B=torch.randn(batch, N, L),
        delta_bias=torch.randn(D),
    )


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(u=torch.randn(2, 4)), r"u must have 3 dimensions"),
        (dict(delta=torch.randn(2, 4, 11)), r"delta must have the shape of u"),
        (dict(delta=torch.randn(2, 4, 10, dtype=torch.float64)), r"u and delta must have the same dtype"),
        (dict(A=-torch.rand(3, 1)), r"A must have shape \(D, N\) with D = 4"),
        (dict(A=-torch.rand(4)), r"A must have 2 dimensions"),
        (dict(B=torch.randn(2, 2, 10)), r"B must have shape \(2, 1, 10\)"),
        (dict(B=torch.randn(2, 3, 1, 10)), r"group count G = 3 must divide D = 4"),
        (dict(B=torch.randn(2, 10)), r"B must be \(batch, N, L\) or \(batch, G, N, L\)"),
        (dict(delta_bias=torch.randn(5)), r"delta_bias must have shape \(D,\) = \(4,\)"),
        (dict(u=torch.randint(0, 3, (2, 4, 10)), delta=torch.randint(0, 3, (2, 4, 10))), r"u must be float16"),
        (dict(u=torch.randn(2, 4, 0), delta=torch.randn(2, 4, 0), B=torch.randn(2, 1, 0)), r"at least one"),
    ],
)
def test_scan_bad_inputs(backend, change, match):
    args = scan_args()
    args.update(change)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        selective_scan_state(**args)


@pytest.mark.skipif(not torch.backends.mps.is_available() and not torch.cuda.is_available(), reason="needs a GPU")
def test_mismatched_devices_are_rejected():
    q, k, _ = qkv()
    with pytest.raises(RuntimeError, match="one device"):
        na2d_qk(q.cuda(), k, 3)


def test_mismatched_devices_are_rejected_with_meta_tensors():
    # A meta tensor stands in for "another device" on machines without a GPU.
    q, k, _ = qkv()
    with pytest.raises(RuntimeError, match=r"all tensors must be on one device, got q on cpu, k on meta"):
        na2d_qk(q, k.to("meta"), 3)
    args = scan_args()
    args["A"] = args["A"].to("meta")
    with pytest.raises(RuntimeError, match=r"A on meta"):
        selective_scan_state(**args)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match=r"backend must be one of \['reference'"):
        with use_backend("triton"):
            pass
