"""Every kernel backend (cpu, and cuda where a GPU exists) against the plain-PyTorch reference.

Each test draws fresh inputs, runs the op and its backward through a kernel
backend in the dtype under test, and compares outputs and the gradients of all
differentiable inputs with the reference evaluated in float64 on the same
values. Errors are measured against the largest reference magnitude, so the
tolerance is a fixed multiple of the dtype's epsilon.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import Tensor

from a2mamba_ops import available_backends, na2d_av, na2d_qk, na2d_qk_softmax, selective_scan_state, use_backend
from a2mamba_ops._native import forced_cpu_capability, supported_cpu_capabilities
from a2mamba_ops.reference import na2d_av_ref, na2d_qk_ref, na2d_qk_softmax_ref, selective_scan_state_ref

BACKENDS = [b for b in available_backends() if b in ("cpu", "cuda")]
DEVICE = {"cpu": "cpu", "cuda": "cuda"}
LOW_PRECISION = (torch.bfloat16, torch.float16)
ALL_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]

# Allowed max |actual - reference| as a multiple of eps * max |reference|. The kernels accumulate
# low-precision inputs in float32 and round once, so a few eps is enough for them.
EPS_MULTIPLE = {torch.float64: 1e3, torch.float32: 64, torch.bfloat16: 4, torch.float16: 4}

pytestmark = pytest.mark.skipif(not BACKENDS, reason="no native kernel backend was built")


def _backend_params():
    # The cpu backend once per instruction-set variant of its kernels that this CPU runs.
    params = []
    for name in BACKENDS:
        variants = supported_cpu_capabilities() if name == "cpu" else [None]
        params += [pytest.param((name, v), id=f"{name}-{v}" if v else name) for v in variants]
    return params


@pytest.fixture(params=_backend_params())
def backend(request):
    """The backend under test, with its kernel variant selected for the test's duration."""
    name, variant = request.param
    with forced_cpu_capability(variant) if variant else contextlib.nullcontext():
        yield name


def _tolerance(dtype: torch.dtype) -> float:
    return EPS_MULTIPLE[dtype] * torch.finfo(dtype).eps


def assert_matches(actual: Tensor, expected: Tensor, dtype: torch.dtype, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().item()
    error = (actual.detach().to(torch.float64) - expected.detach()).abs().max().item()
    assert error <= _tolerance(dtype) * max(scale, 1e-3), (
        f"{what} ({dtype}): max error {error:.3g} against max |reference| {scale:.3g}"
    )


def leaf(t: Tensor) -> Tensor:
    """A fresh leaf with the same values and strides (so non-contiguous views stay non-contiguous)."""
    return t.detach().requires_grad_()


def run_with_grads(fn, inputs: dict[str, Tensor], grad_out: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    leaves = {name: leaf(t) for name, t in inputs.items()}
    out = fn(**leaves)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out.to(out.dtype))
    return out, dict(zip(leaves, grads, strict=True))


def check_against_reference(backend, kernel_fn, reference_fn, inputs, dtype, grad_out):
    """Forward and all input gradients of kernel_fn under `backend` vs reference_fn in float64."""
    with use_backend(backend):
        out, grads = run_with_grads(kernel_fn, inputs, grad_out)
    ref_inputs = {name: t.detach().to(torch.float64) for name, t in inputs.items()}
    ref_out, ref_grads = run_with_grads(reference_fn, ref_inputs, grad_out.to(torch.float64))
    assert_matches(out, ref_out, dtype, "output")
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, f"gradient of {name} has dtype {grad.dtype}"
        assert_matches(grad, ref_grads[name], dtype, f"gradient of {name}")
    return out


# --------------------------------------------------------------------------- na2d


def na2d_inputs(device, dtype, batch, heads, H, W, dim, kernel, with_rpb=True):
    kh, kw = kernel
    inputs = {
        "q": torch.randn(batch, heads, H, W, dim),
        "k": torch.randn(batch, heads, H, W, dim),
    }
    if with_rpb:
        inputs["rpb"] = torch.randn(heads, 2 * kh - 1, 2 * kw - 1)
    return {name: t.to(device=device, dtype=dtype) for name, t in inputs.items()}


def check_qk(backend, inputs, kernel, dilation, dtype):
    attn_shape = (*inputs["q"].shape[:4], kernel[0] * kernel[1])
    grad_out = torch.randn(attn_shape, device=inputs["q"].device)
    return check_against_reference(
        backend,
        lambda q, k, rpb=None: na2d_qk(q, k, kernel, dilation, rpb),
        lambda q, k, rpb=None: na2d_qk_ref(q, k, kernel, dilation, rpb),
        inputs,
        dtype,
        grad_out,
    )


def check_qk_softmax(backend, inputs, kernel, dilation, dtype):
    attn_shape = (*inputs["q"].shape[:4], kernel[0] * kernel[1])
    grad_out = torch.randn(attn_shape, device=inputs["q"].device)
    return check_against_reference(
        backend,
        lambda q, k, rpb=None: na2d_qk_softmax(q, k, kernel, dilation, rpb),
        lambda q, k, rpb=None: na2d_qk_softmax_ref(q, k, kernel, dilation, rpb),
        inputs,
        dtype,
        grad_out,
    )


def check_av(backend, attn, v, kernel, dilation, dtype):
    grad_out = torch.randn(v.shape, device=v.device)
    return check_against_reference(
        backend,
        lambda attn, v: na2d_av(attn, v, kernel, dilation),
        lambda attn, v: na2d_av_ref(attn, v, kernel, dilation),
        {"attn": attn, "v": v},
        dtype,
        grad_out,
    )


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_na2d_matches_reference_in_every_dtype(backend, dtype):
    device = DEVICE[backend]
    kernel, dilation = (5, 3), (2, 3)
    inputs = na2d_inputs(device, dtype, 2, 3, 13, 17, 16, kernel)
    attn = check_qk(backend, inputs, kernel, dilation, dtype)
    assert attn.dtype == dtype
    weights = check_qk_softmax(backend, inputs, kernel, dilation, dtype)
    assert weights.dtype == dtype
    v = torch.randn(inputs["q"].shape, device=device).to(dtype)
    out = check_av(backend, weights.detach(), v, kernel, dilation, dtype)
    assert out.dtype == dtype


# (H, W, kernel, dilation): odd sizes, every kernel 3..13, dilations 1..4 and per-axis pairs, maps
# exactly kernel*dilation wide (every query's window then touches a border), and sizes where
# length % dilation != 0 (dilation groups of unequal length). Kernels 15 and 19: windows taller
# than the registers hold at once (the CPU logits then take two passes and a separate softmax) and
# rows three vectors wide. Blocks of queries that share one window (a border, a dilation group
# barely longer than the kernel; the CPU logits take those together): a 13x13 window over a 13x13
# map (one window for all, more slots than one pass holds in registers) and the second branch of
# A2Mamba's first stage (56 rows, kernel 11, dilation 5: groups of 11 and 12). Rows wide enough for
# runs of interior queries (the CPU logits take those a vector of queries at a time, in float32):
# kernel 11 as A2Mamba's stage 1, dilated groups, the widest window row a tile takes (15) and the
# largest window (13x13).
WINDOWS = [
    ((13, 13), (13, 13), (1, 1)),
    ((56, 23), (11, 11), (5, 2)),
    ((12, 70), (11, 11), (1, 1)),
    ((10, 64), (5, 5), (2, 2)),
    ((8, 53), (3, 15), (2, 1)),
    ((14, 60), (13, 13), (1, 1)),
    ((13, 17), (3, 3), (1, 1)),
    ((13, 17), (5, 5), (2, 2)),
    ((13, 17), (3, 5), (4, 3)),
    ((13, 17), (7, 7), (1, 2)),
    ((9, 12), (3, 3), (3, 4)),
    ((9, 9), (9, 9), (1, 1)),
    ((11, 22), (11, 11), (1, 2)),
    ((13, 15), (13, 5), (1, 3)),
    ((14, 21), (7, 7), (2, 3)),
    ((16, 12), (3, 3), (4, 4)),
    ((12, 19), (3, 9), (4, 2)),
    ((17, 16), (15, 3), (1, 2)),
    ((9, 40), (3, 19), (2, 2)),
]


@pytest.mark.parametrize("size,kernel,dilation", WINDOWS, ids=lambda x: "x".join(map(str, x)))
@pytest.mark.parametrize("with_rpb", [True, False], ids=["rpb", "no_rpb"])
def test_na2d_windows_and_borders(backend, size, kernel, dilation, with_rpb):
    device = DEVICE[backend]
    H, W = size
    # float32 is what models run; errors in the window rules would be O(1), far above its tolerance.
    inputs = na2d_inputs(device, torch.float32, 1, 2, H, W, 5, kernel, with_rpb)
    check_qk(backend, inputs, kernel, dilation, torch.float32)
    weights = check_qk_softmax(backend, inputs, kernel, dilation, torch.float32)
    v = torch.randn(inputs["q"].shape, device=device)
    check_av(backend, weights.detach(), v, kernel, dilation, torch.float32)


# Channel counts the kernels hold in registers in different shapes (whole vectors, or whole vectors
# plus a half and/or a quarter vector, as A2Mamba's head dims 24 and 28 at 16 float lanes) and ones
# they accumulate in memory (odd counts, more than eight vectors), for every variant's vector width.
CHANNEL_COUNTS = [1, 3, 4, 6, 8, 12, 20, 24, 28, 32, 36, 44, 48, 60, 64, 68, 128, 132]


@pytest.mark.parametrize("dim", CHANNEL_COUNTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_na2d_every_channel_layout(backend, dim, dtype):
    device = DEVICE[backend]
    kernel, dilation = (3, 5), (2, 1)
    inputs = na2d_inputs(device, dtype, 1, 2, 7, 9, dim, kernel)
    weights = check_qk_softmax(backend, inputs, kernel, dilation, dtype)
    v = torch.randn(inputs["q"].shape, device=device).to(dtype)
    check_av(backend, weights.detach(), v, kernel, dilation, dtype)


@pytest.mark.parametrize("dim", [1, 3, 16, 24, 256, 257])
def test_na2d_interior_tiles_every_channel_count(backend, dim):
    """Interior queries of wide rows in vectors of queries: head dims up to the tile's 256 channels, and past it.

    The logits and weights alone (what the tiles compute): at 256 channels the backward's float32
    sums, which tiles do not touch, are past this file's fixed tolerance."""
    device = DEVICE[backend]
    kernel, dilation = (3, 7), (1, 2)
    inputs = na2d_inputs(device, torch.float32, 1, 2, 4, 48, dim, kernel)
    reference = {name: t.double() for name, t in inputs.items()}
    logits = na2d_qk_ref(reference["q"], reference["k"], kernel, dilation, reference["rpb"])
    with use_backend(backend):
        got_logits = na2d_qk(inputs["q"], inputs["k"], kernel, dilation, inputs["rpb"])
        got_weights = na2d_qk_softmax(inputs["q"], inputs["k"], kernel, dilation, inputs["rpb"])
    assert_matches(got_logits, logits, torch.float32, "logits")
    assert_matches(got_weights, logits.softmax(-1), torch.float32, "weights")


# Wide rows (interior tiles), a window as large as the map (shared windows) and dilation with few
# queries per window (one query at a time): each path's softmax.
@pytest.mark.parametrize(
    "size, kernel, dilation", [((4, 48), (3, 7), (1, 2)), ((9, 9), (9, 9), (1, 1)), ((12, 10), (5, 3), (2, 3))]
)
def test_na2d_softmax_at_extreme_logits(backend, size, kernel, dilation):
    """Logits spread over hundreds (weights that underflow), a bias of -inf (weights exactly 0) and a
    NaN query (a row of NaN), as torch.softmax gives them."""
    device = DEVICE[backend]
    inputs = na2d_inputs(device, torch.float32, 2, 2, *size, 16, kernel)
    inputs["rpb"] = inputs["rpb"] * 40
    inputs["rpb"][:, kernel[0] - 1, kernel[1] - 1] = -torch.inf  # the query's own pixel
    inputs["q"][1, 0, 2, 1, 3] = torch.nan
    reference = {name: t.double() for name, t in inputs.items()}
    expected = na2d_qk_softmax_ref(reference["q"], reference["k"], kernel, dilation, reference["rpb"])
    with use_backend(backend):
        got = na2d_qk_softmax(inputs["q"], inputs["k"], kernel, dilation, inputs["rpb"])
    nan = expected.isnan()
    assert nan.any() and torch.equal(got.isnan(), nan), "NaN rows"
    assert torch.equal(got[expected == 0], torch.zeros_like(got[expected == 0])), "weights of -inf logits"
    assert (expected[~nan] < 1e-30).any(), "the case must reach exp's underflow"
    # A weight's error follows its logit's, float32 rounding of values in the hundreds.
    logits = na2d_qk_ref(reference["q"], reference["k"], kernel, dilation, reference["rpb"])
    scale = logits[logits.isfinite()].abs().max().item()
    error = (got[~nan].double() - expected[~nan]).abs().max().item()
    assert error <= 32 * torch.finfo(torch.float32).eps * scale, f"weights: max error {error:.3g}"


def _channels_last_like(batch, heads, H, W, dim, device):
    # Memory order (batch, H, W, heads, dim), viewed as (batch, heads, H, W, dim).
    return torch.randn(batch, H, W, heads, dim, device=device).permute(0, 3, 1, 2, 4)


def test_na2d_non_contiguous_inputs(backend):
    device = DEVICE[backend]
    kernel, dilation = (3, 5), (2, 1)
    batch, heads, H, W, dim = 2, 2, 9, 11, 6
    q = _channels_last_like(batch, heads, H, W, dim, device)
    k = torch.randn(batch, heads, H, W, 2 * dim, device=device)[..., ::2]  # strided channel axis
    rpb = torch.randn(heads, 2 * kernel[1] - 1, 2 * kernel[0] - 1, device=device).transpose(1, 2)
    assert not (q.is_contiguous() or k.is_contiguous() or rpb.is_contiguous())
    attn = check_qk(backend, {"q": q, "k": k, "rpb": rpb}, kernel, dilation, torch.float32)
    check_qk_softmax(backend, {"q": q, "k": k, "rpb": rpb}, kernel, dilation, torch.float32)

    slots = kernel[0] * kernel[1]
    attn_t = torch.randn(batch, heads, W, H, slots, device=device).transpose(2, 3)  # transposed map
    v = _channels_last_like(batch, heads, H, W, dim, device)
    assert not (attn_t.is_contiguous() or v.is_contiguous())
    check_av(backend, attn_t, v, kernel, dilation, torch.float32)
    assert attn.shape == attn_t.shape


def test_na2d_a2mamba_branch_chain(backend):
    """Both branches of the token mixer as the model composes them (spec 5.2), gradients through the chain."""
    device = DEVICE[backend]
    K, H, W, c = 7, 14, 15, 8
    d2 = (min(H // K, K), min(W // K, K))
    names = ("q1", "k1", "v1", "q2", "k2", "v2")
    inputs = {n: torch.randn(2, 1, H, W, c, device=device) for n in names}
    inputs["rpb"] = torch.randn(1, 2 * K - 1, 2 * K - 1, device=device) * 0.1

    def branches(qk, av, q1, k1, v1, q2, k2, v2, rpb):
        o1 = av(qk(q1, k1, (K, K), (1, 1), rpb).softmax(-1), v1, (K, K), (1, 1))
        o2 = av(qk(q2, k2, (K, K), d2, rpb).softmax(-1), o1 + v2, (K, K), d2)
        return torch.cat([o1, o2], dim=1)

    check_against_reference(
        backend,
        lambda **x: branches(na2d_qk, na2d_av, **x),
        lambda **x: branches(na2d_qk_ref, na2d_av_ref, **x),
        inputs,
        torch.float32,
        torch.randn(2, 2, H, W, c, device=device),
    )


# --------------------------------------------------------------------------- scan


def scan_inputs(device, dtype, batch, D, N, L, groups, with_bias=True):
    """u, delta, B in `dtype`; A and delta_bias in the state precision, as models hold them."""
    state = torch.float64 if dtype == torch.float64 else torch.float32
    B_shape = (batch, N, L) if groups is None else (batch, groups, N, L)
    inputs = {
        "u": torch.randn(batch, D, L).to(dtype),
        "delta": (torch.randn(batch, D, L) * 0.5 - 1.0).to(dtype),
        "A": (-torch.rand(D, N) * 2 - 0.05).to(state),
        "B": torch.randn(B_shape).to(dtype),
    }
    if with_bias:
        inputs["delta_bias"] = (torch.randn(D) * 0.5).to(state)
    return {name: t.to(device) for name, t in inputs.items()}


def check_scan(backend, inputs, dtype, softplus=True):
    u = inputs["u"]
    batch, D, L = u.shape
    N = inputs["A"].shape[1]
    grad_out = torch.randn(batch, D, N, L, device=u.device)
    h = check_against_reference(
        backend,
        lambda u, delta, A, B, delta_bias=None: selective_scan_state(u, delta, A, B, delta_bias, softplus),
        lambda u, delta, A, B, delta_bias=None: selective_scan_state_ref(u, delta, A, B, delta_bias, softplus),
        inputs,
        dtype,
        grad_out,
    )
    assert h.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    return h


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_scan_matches_reference_in_every_dtype(backend, dtype):
    check_scan(backend, scan_inputs(DEVICE[backend], dtype, 2, 6, 2, 75, groups=3), dtype)


@pytest.mark.parametrize(
    "D,N,L,groups",
    [
        (5, 1, 131, None),  # ungrouped (batch, N, L), N = 1 as in A2Mamba
        (4, 3, 64, None),  # ungrouped, N > 1
        (8, 1, 50, 1),  # one group, 4-d B
        (8, 2, 33, 2),  # grouped
        (6, 2, 17, 6),  # one channel per group
    ],
)
def test_scan_grouping_and_states(backend, D, N, L, groups):
    check_scan(backend, scan_inputs(DEVICE[backend], torch.float32, 2, D, N, L, groups), torch.float32)


def test_scan_without_bias_or_softplus(backend):
    device = DEVICE[backend]
    inputs = scan_inputs(device, torch.float32, 2, 4, 2, 40, groups=2, with_bias=False)
    check_scan(backend, inputs, torch.float32)
    # Without softplus delta is used as given: keep it positive so the states stay bounded.
    inputs["delta"] = inputs["delta"].abs()
    check_scan(backend, inputs, torch.float32, softplus=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_scan_softplus_threshold(backend, dtype):
    # delta + bias far above and below PyTorch's softplus threshold of 20 (and right at it).
    device = DEVICE[backend]
    inputs = scan_inputs(device, dtype, 1, 3, 1, 14, groups=None)
    steps = [19.5, 20.0, 20.5, 25.0, -30.0, -95.0, 0.0] * 2
    inputs["delta"] = torch.tensor(steps, dtype=dtype, device=device).expand(1, 3, 14)
    inputs["delta_bias"] = torch.tensor([0.0, 0.5, -0.5], dtype=inputs["A"].dtype, device=device)
    inputs["A"] = inputs["A"] * 0.01  # keep exp(dt*A) away from underflow so the gradients are informative
    check_scan(backend, inputs, dtype)


def test_scan_non_contiguous_inputs(backend):
    device = DEVICE[backend]
    batch, D, N, L = 2, 6, 2, 30
    inputs = {
        "u": torch.randn(batch, L, D, device=device).transpose(1, 2),
        "delta": (torch.randn(batch, D, 2 * L, device=device) * 0.5)[..., ::2],
        "A": -torch.rand(N, D, device=device).t(),
        "B": torch.randn(batch, N, L, 2, device=device)[..., 0],
        "delta_bias": torch.randn(2 * D, device=device)[::2],
    }
    assert not any(t.is_contiguous() for t in inputs.values())
    check_scan(backend, inputs, torch.float32)


def test_scan_long_sequence(backend):
    # A 128x128 map scanned as one sequence: the state must neither drift nor overflow over 16384 steps.
    check_scan(backend, scan_inputs(DEVICE[backend], torch.float32, 1, 2, 1, 16384, groups=None), torch.float32)


# --------------------------------------------------------------------------- determinism


def test_gradients_are_deterministic(backend):
    """Reductions over the batch, the neighbourhood and a group's channels have one fixed order."""
    device = DEVICE[backend]
    kernel, dilation = (5, 5), (2, 1)
    qk_in = na2d_inputs(device, torch.float32, 3, 2, 12, 13, 8, kernel)
    av_in = {"attn": torch.randn(3, 2, 12, 13, 25, device=device), "v": torch.randn(3, 2, 12, 13, 8, device=device)}
    scan_in = scan_inputs(device, torch.float32, 3, 8, 2, 70, groups=2)
    ops = [
        (lambda q, k, rpb: na2d_qk(q, k, kernel, dilation, rpb), qk_in, torch.randn(3, 2, 12, 13, 25, device=device)),
        (lambda attn, v: na2d_av(attn, v, kernel, dilation), av_in, torch.randn(3, 2, 12, 13, 8, device=device)),
        (selective_scan_state, scan_in, torch.randn(3, 8, 2, 70, device=device)),
    ]

    def all_grads():
        with use_backend(backend):
            return [g for fn, inputs, grad_out in ops for g in run_with_grads(fn, inputs, grad_out)[1].values()]

    first = all_grads()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        second = all_grads()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
