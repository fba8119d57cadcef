"""CUDA-specific behaviour of the cuda backend (skipped without a GPU and the CUDA build).

Accuracy follows the flash-attention rule: on the same inputs, the kernel's
error against the float64 reference may be at most twice the error of the
plain-PyTorch reference run in the same (low) precision, plus a tiny absolute
term. The general backend-vs-reference sweep lives in test_backends.py; this
file covers what only the GPU path can get wrong: tiling edges, long scans,
the largest supported window/heads/head dim, streams, CUDA graphs, devices
and deterministic gradients.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import Tensor

from a2mamba_ops import available_backends, na2d_av, na2d_qk, selective_scan_state, use_backend
from a2mamba_ops.reference import na2d_av_ref, na2d_qk_ref, selective_scan_state_ref

HAS_CUDA = "cuda" in available_backends()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and a2mamba-ops built with CUDA kernels"),
]

LOW = [torch.float32, torch.float16, torch.bfloat16]


# ----------------------------------------------------------------------------- helpers


def _grads(fn, inputs: dict[str, Tensor], grad_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    out = fn(**leaves)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out.to(out.dtype))
    return out.detach(), dict(zip(leaves, grads, strict=True))


@contextlib.contextmanager
def _deterministic(enabled: bool):
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _flash_check(kernel: Tensor, low_ref: Tensor, ref64: Tensor, what: str) -> None:
    """|kernel - ref64| <= 2 |low_ref - ref64| + tiny (all as max over elements)."""
    assert kernel.shape == ref64.shape, f"{what}: shape {tuple(kernel.shape)} != {tuple(ref64.shape)}"
    assert torch.isfinite(kernel).all(), f"{what}: non-finite values"
    scale = max(ref64.abs().max().item(), 1e-6)
    kernel_err = (kernel.double() - ref64).abs().max().item()
    ref_err = (low_ref.double() - ref64).abs().max().item()
    tiny = 16 * torch.finfo(torch.float32).eps * scale
    assert kernel_err <= 2 * ref_err + tiny, (
        f"{what}: kernel error {kernel_err:.3g} > 2 x reference error {ref_err:.3g} + {tiny:.2g} "
        f"(max |ref| {scale:.3g})"
    )


def _compare_three_ways(
    kernel_fn, ref_fn, inputs: dict[str, Tensor], grad_out: Tensor, what: str, deterministic: bool = False
) -> Tensor:
    """Forward and every input gradient: cuda kernel vs reference (same dtype) vs reference in float64.

    `deterministic` applies to the kernel run only (the reference uses cuBLAS, which refuses
    deterministic mode without CUBLAS_WORKSPACE_CONFIG).
    """
    with use_backend("cuda"), _deterministic(deterministic):
        out, grads = _grads(kernel_fn, inputs, grad_out)
    low_out, low_grads = _grads(ref_fn, inputs, grad_out)
    inputs64 = {k: v.double() for k, v in inputs.items()}
    out64, grads64 = _grads(ref_fn, inputs64, grad_out.double())
    _flash_check(out, low_out, out64, f"{what} output")
    for name in inputs:
        _flash_check(grads[name], low_grads[name], grads64[name], f"{what} d{name}")
    return out


def _na2d_inputs(shape, kernel, dtype, heads_bias=True):
    B, n, H, W, c = shape
    kh, kw = kernel
    q = (torch.randn(shape, device="cuda") * c**-0.5).to(dtype)
    k = torch.randn(shape, device="cuda").to(dtype)
    rpb = (torch.randn(n, 2 * kh - 1, 2 * kw - 1, device="cuda") * 0.5).to(dtype) if heads_bias else None
    return q, k, rpb


def _check_na2d(shape, kernel, dilation, dtype, with_rpb=True, what="na2d"):
    q, k, rpb = _na2d_inputs(shape, kernel, dtype, with_rpb)
    kk = kernel[0] * kernel[1]
    grad_attn = torch.randn(*shape[:4], kk, device="cuda").to(dtype)
    inputs = {"q": q, "k": k} | ({"rpb": rpb} if with_rpb else {})

    def qk(q, k, rpb=None):
        return na2d_qk(q, k, kernel, dilation, rpb=rpb)

    def qk_ref(q, k, rpb=None):
        return na2d_qk_ref(q, k, kernel, dilation, rpb=rpb)

    _compare_three_ways(qk, qk_ref, inputs, grad_attn, f"{what} qk {dtype}")

    attn = torch.randn(*shape[:4], kk, device="cuda").softmax(-1).to(dtype)
    v = torch.randn(shape, device="cuda").to(dtype)
    grad_out = torch.randn(shape, device="cuda").to(dtype)

    def av(attn, v):
        return na2d_av(attn, v, kernel, dilation)

    def av_ref(attn, v):
        return na2d_av_ref(attn, v, kernel, dilation)

    _compare_three_ways(av, av_ref, {"attn": attn, "v": v}, grad_out, f"{what} av {dtype}")


def _scan_inputs(batch, D, N, L, groups, dtype, bias=True):
    u = torch.randn(batch, D, L, device="cuda").to(dtype)
    delta = (torch.randn(batch, D, L, device="cuda") * 0.5 - 1.0).to(dtype)
    A = -torch.exp(torch.randn(D, N, device="cuda") * 0.5)
    B = torch.randn(batch, groups, N, L, device="cuda").to(dtype)
    inputs = {"u": u, "delta": delta, "A": A, "B": B}
    if bias:
        inputs["delta_bias"] = torch.randn(D, device="cuda") * 0.5
    return inputs


def _check_scan(batch, D, N, L, groups, dtype, what="scan", deterministic=False):
    inputs = _scan_inputs(batch, D, N, L, groups, dtype)
    grad_h = torch.randn(batch, D, N, L, device="cuda")
    _compare_three_ways(
        selective_scan_state, selective_scan_state_ref, inputs, grad_h, f"{what} {dtype}", deterministic
    )


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize(
    "shape,kernel,dilation",
    [
        # A2Mamba-like branches: 56/28/14 maps, windows 11/9/7, branch-2 dilations.
        ((2, 2, 56, 56, 24), (11, 11), (1, 1)),
        ((1, 2, 28, 28, 32), (9, 9), (3, 3)),
        ((2, 4, 14, 14, 32), (7, 7), (2, 2)),
        # tile edges: group lengths that are not multiples of the 8x8 tile, unequal dilation groups,
        # rectangular kernels and a head dim that is not a multiple of the channel chunk.
        ((1, 3, 19, 23, 20), (5, 7), (3, 2)),
        ((1, 1, 9, 17, 8), (9, 3), (1, 5)),
    ],
    ids=lambda x: "x".join(map(str, x)),
)
def test_na2d_accuracy_like_flash_attention(shape, kernel, dilation, dtype):
    _check_na2d(shape, kernel, dilation, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_na2d_largest_supported_window_heads_and_head_dim(dtype):
    # K = 13 (169 logits per query, the most slots per lane), 32 heads, head dim 128 (8 channel chunks).
    _check_na2d((1, 32, 27, 26, 128), (13, 13), (1, 2), dtype, what="K13 h32 c128")


def test_na2d_without_bias_on_cuda():
    _check_na2d((2, 2, 16, 16, 16), (5, 5), (1, 1), torch.float32, with_rpb=False)


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize(
    "batch,D,N,L,groups",
    [
        (2, 48, 1, 196, 1),  # A2Mamba: N = 1, B shared by all channels
        (3, 13, 1, 77, 1),  # rows not a multiple of the 8 warps of a block; L not a multiple of 128
        (2, 12, 4, 300, 3),  # groups, several states
        (1, 16, 16, 33, 16),  # one channel per group, N = 16
    ],
)
def test_scan_accuracy_like_flash_attention(batch, D, N, L, groups, dtype):
    _check_scan(batch, D, N, L, groups, dtype)


def test_scan_long_sequence_16384():
    _check_scan(2, 8, 1, 16384, 1, torch.float32, what="L=16384")


@pytest.mark.parametrize("N", [1, 3])
def test_scan_with_few_rows_splits_length_into_segments(N):
    # Batch 1 and a few channels: the forward walks L in segments, each from the state the ones
    # before it leave; 3000 steps leave a partial last round.
    _check_scan(1, 3, N, 3000, 1, torch.float32, what=f"few rows N={N}")


def test_scan_without_softplus_and_bias():
    inputs = _scan_inputs(2, 8, 2, 150, 2, torch.float32, bias=False)
    inputs["delta"] = inputs["delta"].abs()
    grad_h = torch.randn(2, 8, 2, 150, device="cuda")

    def kernel(**kw):
        return selective_scan_state(**kw, delta_softplus=False)

    def ref(**kw):
        return selective_scan_state_ref(**kw, delta_softplus=False)

    _compare_three_ways(kernel, ref, inputs, grad_h, "scan no softplus")


@pytest.mark.parametrize("deterministic", [False, True])
def test_scan_grouped_db_in_both_reduction_modes(deterministic):
    # dB is reduced with atomics normally and with per-block partial rows + a fixed-order sum in deterministic mode.
    _check_scan(2, 24, 2, 140, 2, torch.float32, what=f"deterministic={deterministic}", deterministic=deterministic)


def _at_offset(t: Tensor) -> Tensor:
    """The same values, contiguous, starting one element past a 16-byte boundary."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)[1:]
    return flat.view(t.shape).copy_(t)


def test_scan_at_unaligned_offsets_matches_aligned():
    # Contiguous tensors with a storage offset must not be moved in 16-byte packs (a GPU faults on a
    # misaligned vector access): every input of the forward and the backward, the caller's dh and h too.
    inputs = _scan_inputs(2, 8, 1, 196, 1, torch.float32)
    h = selective_scan_state(**inputs)
    shifted = {k: (_at_offset(v) if k in ("u", "delta", "B") else v) for k, v in inputs.items()}
    torch.testing.assert_close(selective_scan_state(**shifted), h, rtol=0, atol=0)
    dh = torch.randn_like(h)
    backward = torch.ops.a2mamba.selective_scan_state_backward
    args = (inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["delta_bias"], True)
    expected = backward(dh, *args, h)
    got = backward(_at_offset(dh), *args, _at_offset(h))
    for name, a, b in zip(("du", "ddelta", "dA", "dB", "ddelta_bias"), got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"{name} with dh and h at an offset")


# ----------------------------------------------------------------------------- streams, graphs, devices


def _all_ops(q, k, rpb, attn_w, v, u, delta, A, B, bias):
    """Forward and backward of the three ops, everything the graph/stream tests replay."""
    attn = na2d_qk(q, k, 7, 2, rpb=rpb)
    out = na2d_av(attn_w, v, 7, 2)
    h = selective_scan_state(u, delta, A, B, bias)
    loss = attn.float().square().sum() + out.float().square().sum() + h.square().sum()
    grads = torch.autograd.grad(loss, [q, k, rpb, attn_w, v, u, delta, A, B, bias])
    return (attn, out, h, *grads)


def _op_inputs(dtype=torch.float32):
    q, k, rpb = _na2d_inputs((2, 2, 14, 14, 32), (7, 7), dtype)
    attn_w = torch.randn(2, 2, 14, 14, 49, device="cuda").softmax(-1).to(dtype)
    v = torch.randn(2, 2, 14, 14, 32, device="cuda").to(dtype)
    scan = _scan_inputs(2, 16, 1, 196, 1, dtype)
    tensors = [q, k, rpb, attn_w, v, scan["u"], scan["delta"], scan["A"], scan["B"], scan["delta_bias"]]
    return [t.requires_grad_() for t in tensors]


def test_ops_run_on_the_current_stream():
    # Inputs are written on a side stream behind a long GPU sleep; an op launched on any other
    # stream than the current one would read them before they are written.
    sources = [t.detach() for t in _op_inputs()]
    with use_backend("cuda"):
        expected = _all_ops(*[t.clone().requires_grad_() for t in sources])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            inputs = [torch.zeros_like(t) for t in sources]
            torch.cuda._sleep(100_000_000)
            for dst, src in zip(inputs, sources, strict=True):
                dst.copy_(src)
            got = _all_ops(*[t.requires_grad_() for t in inputs])
        side.synchronize()
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"result {i} differs on a side stream")


def test_cuda_graph_capture_and_replay_equal_eager():
    static = _op_inputs()
    with use_backend("cuda"):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (allocator pools, lazy init) outside the capture
            for _ in range(2):
                _all_ops(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = _all_ops(*static)
        fresh = _op_inputs()
        with torch.no_grad():
            for dst, src in zip(static, fresh, strict=True):
                dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        eager = _all_ops(*[t.detach().clone().requires_grad_() for t in fresh])
    for i, (a, b) in enumerate(zip(captured, eager, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"result {i}: graph replay differs from eager")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ops_follow_their_tensors_device():
    with torch.cuda.device(0), use_backend("cuda"):
        inputs = [t.detach().to("cuda:1").requires_grad_() for t in _op_inputs()]
        got = _all_ops(*inputs)
    with torch.cuda.device(1), use_backend("cuda"):
        expected = _all_ops(*[t.detach().clone().requires_grad_() for t in inputs])
    for a, b in zip(got, expected, strict=True):
        assert a.device == torch.device("cuda:1")
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rpb_gradient_is_bitwise_reproducible(dtype):
    q, k, rpb = _na2d_inputs((4, 4, 28, 28, 32), (9, 9), dtype)
    grad = torch.randn(4, 4, 28, 28, 81, device="cuda").to(dtype)

    def drpb():
        leaf = rpb.detach().clone().requires_grad_()
        attn = na2d_qk(q, k, 9, 3, rpb=leaf)
        return torch.autograd.grad(attn, leaf, grad)[0]

    with _deterministic(True), use_backend("cuda"):
        first, second = drpb(), drpb()
    assert torch.equal(first, second)


def test_scan_gradients_are_bitwise_reproducible_in_deterministic_mode():
    # 256 channels in one group: 32 blocks add to every dB element, so a reduction whose order
    # depends on block scheduling would show.
    inputs = _scan_inputs(2, 256, 1, 3136, 1, torch.float32)
    grad_h = torch.randn(2, 256, 1, 3136, device="cuda")
    with _deterministic(True):
        with use_backend("cuda"):
            _, first = _grads(selective_scan_state, inputs, grad_h)
            _, second = _grads(selective_scan_state, inputs, grad_h)
    for name in inputs:
        assert torch.equal(first[name], second[name]), f"d{name} differs between two runs"
