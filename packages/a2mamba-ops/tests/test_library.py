"""The ops as PyTorch sees them: gradients, torch.library registration, torch.compile."""

from __future__ import annotations

import contextlib

import pytest
import torch

import a2mamba_ops
from a2mamba_ops import _ops, available_backends, na2d_av, na2d_qk, na2d_qk_softmax, selective_scan_state, use_backend
from a2mamba_ops._native import forced_cpu_capability, supported_cpu_capabilities

CPU_BACKENDS = [b for b in available_backends() if b in ("reference", "cpu")]
KERNEL = "cpu" if "cpu" in available_backends() else None
needs_kernels = pytest.mark.skipif(KERNEL is None, reason="native CPU kernels not built")


@pytest.fixture(
    params=[
        pytest.param((name, variant), id=f"{name}-{variant}" if variant else name)
        for name in CPU_BACKENDS
        for variant in (supported_cpu_capabilities() if name == "cpu" else [None])
    ]
)
def cpu_backend(request):
    """reference, and the cpu backend once per kernel variant this CPU runs (selected for the test)."""
    name, variant = request.param
    with forced_cpu_capability(variant) if variant else contextlib.nullcontext(), use_backend(name):
        yield name


def f64(*shape, requires_grad=True, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_(requires_grad)


@pytest.mark.parametrize("kernel,dilation,size", [((3, 3), (1, 1), (5, 7)), ((3, 5), (2, 1), (7, 6))])
def test_na2d_gradcheck(cpu_backend, kernel, dilation, size):
    H, W = size
    q, k, v = (f64(1, 1, H, W, 2) for _ in range(3))
    rpb = f64(1, 2 * kernel[0] - 1, 2 * kernel[1] - 1)
    attn = f64(1, 1, H, W, kernel[0] * kernel[1])
    assert torch.autograd.gradcheck(lambda q, k, rpb: na2d_qk(q, k, kernel, dilation, rpb), (q, k, rpb))
    assert torch.autograd.gradcheck(lambda q, k, rpb: na2d_qk_softmax(q, k, kernel, dilation, rpb), (q, k, rpb))
    assert torch.autograd.gradcheck(lambda a, v: na2d_av(a, v, kernel, dilation), (attn, v))


@pytest.mark.parametrize("grouped", [False, True])
def test_scan_gradcheck(cpu_backend, grouped):
    batch, D, N, L = 2, 4, 2, 7
    u, delta = f64(batch, D, L), f64(batch, D, L, scale=0.5)
    A = (-torch.rand(D, N, dtype=torch.float64)).requires_grad_()
    B = f64(batch, 2, N, L) if grouped else f64(batch, N, L)
    bias = f64(D, scale=0.5)
    assert torch.autograd.gradcheck(selective_scan_state, (u, delta, A, B, bias))
    assert torch.autograd.gradcheck(
        lambda u, d, A, B: selective_scan_state(u, d.abs(), A, B, None, False), (u, delta, A, B)
    )


@needs_kernels
def test_opcheck_all_ops():
    q, k = torch.randn(2, 2, 7, 8, 4), torch.randn(2, 2, 7, 8, 4)
    rpb = torch.randn(2, 5, 5)
    attn = torch.randn(2, 2, 7, 8, 9)
    u, delta = torch.randn(2, 4, 12), torch.randn(2, 4, 12)
    A, B, bias = -torch.rand(4, 1), torch.randn(2, 2, 1, 12), torch.randn(4)
    for requires_grad in (False, True):
        for t in (q, k, rpb, attn, u, delta, A, B, bias):
            t.requires_grad_(requires_grad)
        torch.library.opcheck(_ops.na2d_qk_op, (q, k, rpb, 3, 3, 1, 2))
        torch.library.opcheck(_ops.na2d_qk_op, (q, k, None, 3, 3, 2, 1))
        torch.library.opcheck(_ops.na2d_qk_softmax_op, (q, k, rpb, 3, 3, 1, 2))
        torch.library.opcheck(_ops.na2d_qk_softmax_op, (q, k, None, 3, 3, 2, 1))
        torch.library.opcheck(_ops.na2d_av_op, (attn, q, 3, 3, 2, 2))
        torch.library.opcheck(_ops.selective_scan_state_op, (u, delta, A, B, bias, True))
        torch.library.opcheck(_ops.selective_scan_state_op, (u, delta, A, B, None, False))


@needs_kernels
def test_compile_fullgraph_forward_and_backward_matches_eager():
    def mixer(q, k, v, rpb, u, delta, A, B, bias):
        attn = na2d_qk_softmax(q, k, 3, 2, rpb)
        out = na2d_av(attn, v, 3, 2)
        logits = na2d_qk(q, k, 3, 1, rpb)
        h = selective_scan_state(u, delta, A, B, bias)
        return out.sum() + logits.square().mean() + h.square().mean()

    inputs = [
        torch.randn(1, 2, 8, 9, 4),
        torch.randn(1, 2, 8, 9, 4),
        torch.randn(1, 2, 8, 9, 4),
        torch.randn(2, 5, 5),
        torch.randn(1, 4, 16),
        torch.randn(1, 4, 16),
        -torch.rand(4, 1),
        torch.randn(1, 1, 16),
        torch.randn(4),
    ]
    eager_inputs = [t.clone().requires_grad_() for t in inputs]
    compiled_inputs = [t.clone().requires_grad_() for t in inputs]
    torch._dynamo.reset()
    compiled = torch.compile(mixer, fullgraph=True, backend="aot_eager")
    eager_loss = mixer(*eager_inputs)
    compiled_loss = compiled(*compiled_inputs)
    eager_loss.backward()
    compiled_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    for a, b in zip(compiled_inputs, eager_inputs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_backend_choice_and_override():
    assert available_backends()[0] == "reference"
    x = torch.randn(1, 1, 5, 5, 2)
    default = "cpu" if KERNEL else "reference"
    assert a2mamba_ops._backends.select(x.device) == default
    with use_backend("reference"):
        assert a2mamba_ops._backends.select(x.device) == "reference"
    assert a2mamba_ops._backends.select(x.device) == default


def test_forcing_a_backend_for_the_wrong_device_is_an_error():
    if "cuda" not in available_backends():
        pytest.skip("needs the cuda backend")
    with use_backend("cuda"), pytest.raises(RuntimeError, match="cannot run tensors on device cpu"):
        na2d_qk(torch.randn(1, 1, 5, 5, 2), torch.randn(1, 1, 5, 5, 2), 3)


def test_command_line_report(capsys):
    from a2mamba_ops.__main__ import main

    main()
    out = capsys.readouterr().out
    assert f"a2mamba-ops {a2mamba_ops.__version__}" in out
    assert "backends    reference" in out
