"""Check the CUDA ops' logic on a machine without a GPU.

    python packages/a2mamba-ops/tools/cuda_emulation/check_kernels.py [--build-dir DIR] [--quick] [--bounds-check]

The op bodies of csrc/cuda (run_* in scan_launch.cuh and na2d_launch.cuh: buffers and their
zeroing, launch plans, kernel choice, the reductions after the kernels) are compiled by the host
C++ compiler against fake_cuda.h and called exactly as the .cu launchers call them; only the
launcher differs (each CUDA thread a fiber, barriers for __syncthreads and warp shuffles; a barrier
some threads never reach stops the run).
Results are compared with the plain-PyTorch reference computed in float64.

What runs:
- na2d_qk/na2d_av forward and backward at the (kernel, dilation, head dim, map) configurations
  the five published variants run at 224 and 384 pixels (read from a2mamba-models;
  a2mamba_configs.py): in float32 every (kernel, dilation, head dim) class at its smallest map
  (the most border and partial-tile positions per pixel; --full: every map too), in float64,
  float16 and bfloat16 every (kernel, dilation) class at its smallest map with a head dim that
  leaves the last channel chunk partly empty where it has one; plus small odd cases in all
  dtypes (unequal dilation groups, rectangular kernels, K = 13, several heads);
- the scan forward and backward at L = 196, 784, 3136 and 16384, multiples of 32 and odd lengths,
  several groups, N > 1, both dB reductions;
- a determinism check: the scan's dB, with 8 blocks adding to every element, run twice under
  different block orders: bitwise equal in deterministic mode, and (proof that the check can fail)
  different on the atomic path;
- the scan with u, delta, B, dh and h at a storage offset (not 16-byte aligned): equal to the
  aligned run, and no misaligned 16-byte access (which stops the emulation, as it faults a GPU);
- the launch plans' shared-memory sizes against launch_plan.py (the static report's copy).
- a kernel that shuffles in divergent code: the emulation must stop on it with a message (proof
  that a barrier some threads never reach is seen, not hung on).

Shared memory is poisoned (NaN bytes) before every block, static `__shared__` arrays included;
outputs start as NaN; blocks run in a shuffled order. --bounds-check places dynamic shared memory
against guard pages (an access past its end or before its start stops the run). It says nothing
about speed, memory coalescing or the hardware: run tests/test_cuda.py on a GPU for that.
Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.utils.cpp_extension as cpp_extension

from a2mamba_ops.reference import na2d_av_ref, na2d_qk_ref, selective_scan_state_ref

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"
sys.path.insert(0, str(HERE))
import a2mamba_configs  # noqa: E402
import launch_plan  # noqa: E402

# (shape (batch, heads, H, W, dim), kernel, dilation): unequal dilation groups, partial tiles,
# rectangular kernels, several channel chunks, K = 13, several heads (bias table offsets).
SMALL_NA2D_CASES = [
    ((1, 2, 13, 17, 20), (5, 3), (2, 3)),
    ((1, 1, 9, 9, 9), (9, 9), (1, 1)),
    ((1, 1, 19, 10, 17), (7, 3), (2, 3)),
    ((2, 3, 11, 13, 40), (3, 5), (1, 2)),
    ((1, 2, 27, 26, 36), (13, 13), (2, 2)),
]
# (batch, D, N, L, G, deterministic, bias, softplus): rows not a multiple of 8, several chunks,
# A2Mamba's lengths (196, 784, 3136 = 98 * 32) and 16384, multiples of 32; the few rows of the long
# cases make the forward split L into segments (3136: 3, 16384: 16, 2501: 2).
SCAN_CASES = [
    (2, 5, 1, 77, 1, False, True, True),
    (1, 12, 3, 300, 3, False, True, True),
    (2, 9, 2, 40, 3, True, False, False),
    (1, 16, 1, 130, 16, True, True, True),
    (3, 10, 1, 33, 2, False, True, True),
    (1, 8, 1, 64, 1, False, True, True),
    (2, 11, 1, 196, 1, True, True, True),
    (1, 9, 2, 784, 3, False, True, True),
    (1, 6, 1, 3136, 1, False, True, True),
    (1, 4, 1, 3136, 2, True, True, True),
    (1, 3, 1, 16384, 1, False, True, True),
    (1, 5, 2, 2501, 1, False, True, True),  # L in segments with N > 1, a partial last round, no packs
]
# Low-precision dtypes run the scan cases up to this length (the long ones add nothing
# dtype-specific and dominate the run time).
LOW_PRECISION_MAX_L = 3136
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 1.5e-2}
ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def build(build_dir: Path):
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        "a2mamba_emulated_kernels",
        [str(HERE / "emulated_kernels.cpp")],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O1", "-std=c++20", "-include", str(HERE / "fake_cuda.h")],
        build_directory=str(build_dir),
    )


def relative_error(actual, expected) -> float:
    scale = max(expected.double().abs().max().item(), 1e-12)
    return (actual.double() - expected.double()).abs().max().item() / scale


def reference_with_grads(fn, inputs, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in inputs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves, grad_out.double())


class Report:
    def __init__(self) -> None:
        self.failures = 0
        self.checks = 0

    def check(self, name: str, actual, expected, tol: float) -> None:
        error = relative_error(actual, expected)
        ok = error <= tol and bool(torch.isfinite(actual).all())
        self.failures += not ok
        self.checks += 1
        if not ok or self.verbose:
            print(f"{'ok  ' if ok else 'FAIL'} {name}: relative error {error:.2e} (tolerance {tol:.0e})", flush=True)

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        self.checks += 1
        if not ok or self.verbose:
            print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)

    verbose = False


def qk_ref(q, k, rpb, kernel, dil):
    return na2d_qk_ref(q, k, kernel, dil, rpb=rpb)


def check_na2d_case(emu, report: Report, dtype, shape, kernel, dil) -> None:
    tol = TOLERANCE[dtype]
    q, k, v = (torch.randn(shape).to(dtype) for _ in range(3))
    rpb = torch.randn(shape[1], 2 * kernel[0] - 1, 2 * kernel[1] - 1).to(dtype)
    name = f"{dtype} {shape} K{kernel} d{dil}"
    attn = emu.qk_fwd(q, k, rpb, *kernel, *dil)
    grad_attn = torch.randn(attn.shape).to(dtype)
    ref, (ref_dq, ref_dk, ref_drpb) = reference_with_grads(
        functools.partial(qk_ref, kernel=kernel, dil=dil), [q, k, rpb], grad_attn
    )
    report.check(f"na2d_qk {name}", attn, ref, tol)
    dq, dk, drpb = emu.qk_bwd(grad_attn, q, k, True, *kernel, *dil)
    report.check(f"  dq {name}", dq, ref_dq, tol)
    report.check(f"  dk {name}", dk, ref_dk, tol)
    report.check(f"  drpb {name}", drpb, ref_drpb, tol)
    weights = torch.randn(attn.shape).softmax(-1).to(dtype)
    grad_out = torch.randn(shape).to(dtype)
    ref, (ref_da, ref_dv) = reference_with_grads(
        functools.partial(na2d_av_ref, kernel_size=kernel, dilation=dil), [weights, v], grad_out
    )
    report.check(f"na2d_av {name}", emu.av_fwd(weights, v, *kernel, *dil), ref, tol)
    dattn, dv = emu.av_bwd(grad_out, weights, v, *kernel, *dil)
    report.check(f"  dattn {name}", dattn, ref_da, tol)
    report.check(f"  dv {name}", dv, ref_dv, tol)


def _smallest(configs, key, prefer_partial_chunk: bool):
    """The configuration with the smallest map per class (the most border and partial-tile
    positions per pixel), preferring a head dim that leaves the last channel chunk partly empty."""
    chosen: dict = {}
    for c in configs:
        rank = (c.size, prefer_partial_chunk and c.head_dim % 16 == 0)
        k = key(c)
        if k not in chosen or rank < chosen[k][0]:
            chosen[k] = (rank, c)
    return [c for _, c in chosen.values()]


def a2mamba_na_cases(quick: bool, full: bool) -> list[tuple[torch.dtype, tuple, tuple, tuple]]:
    """The A2Mamba configurations to run, per dtype.

    --full: float32 at every configuration. Default (CI): float32 at one configuration per
    (kernel, dilation, head dim) class. Both: float64, float16 and bfloat16 at one per
    (kernel, dilation) class.
    """
    configs = list(a2mamba_configs.na_uses())
    if full:
        f32 = configs
    else:
        f32 = _smallest(configs, lambda c: (c.kernel, c.dilation, c.head_dim), prefer_partial_chunk=False)
    others = _smallest(configs, lambda c: (c.kernel, c.dilation), prefer_partial_chunk=True)
    cases = []
    for dtype in [torch.float32] if quick else ALL_DTYPES:
        for c in f32 if dtype == torch.float32 else others:
            cases.append((dtype, (1, 1, *c.size, c.head_dim), c.kernel, c.dilation))
    return cases


def check_na2d(emu, report: Report, dtypes, quick: bool, full: bool) -> None:
    for dtype in dtypes:
        for shape, kernel, dil in SMALL_NA2D_CASES:
            check_na2d_case(emu, report, dtype, shape, kernel, dil)
    for dtype, shape, kernel, dil in a2mamba_na_cases(quick, full):
        check_na2d_case(emu, report, dtype, shape, kernel, dil)


def scan_inputs(batch, D, N, L, G, with_bias, softplus, dtype):
    state = torch.float64 if dtype == torch.float64 else torch.float32
    u = torch.randn(batch, D, L).to(dtype)
    delta = torch.randn(batch, D, L) * 0.5 - 1.0
    delta = (delta if softplus else delta.abs()).to(dtype)
    A = -torch.exp(torch.randn(D, N) * 0.5).to(state)
    B = torch.randn(batch, G, N, L).to(dtype)
    bias = (torch.randn(D) * 0.5).to(state) if with_bias else None
    return u, delta, A, B, bias


def check_scan(emu, report: Report, dtypes) -> None:
    for dtype in dtypes:
        state = torch.float64 if dtype == torch.float64 else torch.float32
        tol = TOLERANCE[dtype]
        for batch, D, N, L, G, deterministic, with_bias, softplus in SCAN_CASES:
            if dtype in (torch.float16, torch.bfloat16) and L > LOW_PRECISION_MAX_L:
                continue
            u, delta, A, B, bias = scan_inputs(batch, D, N, L, G, with_bias, softplus, dtype)
            h = emu.scan_fwd(u, delta, A, B, bias, softplus)
            grad_h = torch.randn(h.shape, dtype=state)
            inputs = [u, delta, A, B] + ([bias] if with_bias else [])

            def ref_fn(u, delta, A, B, bias=None, softplus=softplus):
                return selective_scan_state_ref(u, delta, A, B, bias, softplus)

            ref, ref_grads = reference_with_grads(ref_fn, inputs, grad_h)
            name = f"{dtype} b{batch} D{D} N{N} L{L} G{G} deterministic={deterministic} bias={with_bias}"
            report.check(f"scan {name}", h, ref, tol)
            grads = emu.scan_bwd(grad_h, u, delta, A, B, bias, softplus, h, deterministic)
            labels = ("du", "ddelta", "dA", "dB", "ddelta_bias")
            for label, got, expected in zip(labels, grads, ref_grads, strict=False):
                report.check(f"  {label} {name}", got, expected, tol)


def check_determinism(emu, report: Report) -> None:
    """dB of a 64-channel, 1-group scan: 8 blocks of 8 channels add into every (step) element."""
    u, delta, A, B, bias = scan_inputs(2, 64, 1, 160, 1, True, True, torch.float32)
    h = emu.scan_fwd(u, delta, A, B, bias, True)
    grad_h = torch.randn(h.shape)
    results = {}
    for deterministic in (True, False):
        for seed in (1, 2):
            emu.set_block_order_seed(seed)
            results[deterministic, seed] = emu.scan_bwd(grad_h, u, delta, A, B, bias, True, h, deterministic)[3]
    emu.set_block_order_seed(0)
    same = torch.equal(results[True, 1], results[True, 2])
    report.require("determinism: deterministic dB is bitwise identical under two block orders", same)
    differs = not torch.equal(results[False, 1], results[False, 2])
    report.require(
        "determinism: the atomic dB differs under two block orders (the check can see order effects)",
        differs,
        "" if differs else "identical: blocks did not contend, so the deterministic check above proves nothing",
    )
    report.check("determinism: atomic dB matches deterministic dB", results[False, 1], results[True, 1], 1e-5)


def at_offset(t):
    """The same values, contiguous, starting one element past a 16-byte boundary."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype)[1:]
    return flat.view(t.shape).copy_(t)


def check_unaligned_scan(emu, report: Report) -> None:
    """Inputs, dh and h at a storage offset: the kernels must not move them in 16-byte packs
    (the emulation stops the process on a misaligned pack, as a GPU would fault)."""
    u, delta, A, B, bias = scan_inputs(2, 8, 1, 196, 1, True, True, torch.float32)
    h = emu.scan_fwd(u, delta, A, B, bias, True)
    h_shifted = emu.scan_fwd(at_offset(u), at_offset(delta), A, at_offset(B), bias, True)
    report.require("scan forward with u, delta and B at an offset equals aligned", torch.equal(h_shifted, h))
    grad_h = torch.randn(h.shape)
    expected = emu.scan_bwd(grad_h, u, delta, A, B, bias, True, h, True)
    got = emu.scan_bwd(at_offset(grad_h), u, delta, A, B, bias, True, at_offset(h), True)
    for label, a, b in zip(("du", "ddelta", "dA", "dB", "ddelta_bias"), got, expected, strict=True):
        report.check(f"scan backward {label} with dh and h at an offset", a, b, 1e-6)


def check_deadlock_detection(build_dir: Path, report: Report) -> None:
    """A kernel with a shuffle in divergent code must stop the emulation with a message, not hang."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import check_kernels; "
        f"check_kernels.build(__import__('pathlib').Path({str(build_dir)!r})).run_divergent_shuffle()"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        stopped = result.returncode == 4 and "deadlocked" in result.stderr
        detail = "" if stopped else f"exit status {result.returncode}: {result.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        stopped, detail = False, "the emulation hung"
    report.require("barriers: a shuffle in divergent code stops the emulation with a message", stopped, detail)


def check_plans(emu, report: Report) -> None:
    """The static report's Python launch plans equal the C++ ones at every A2Mamba configuration."""
    mismatches = []
    for c in a2mamba_configs.na_uses():
        for dtype, name in ((torch.float32, "float32"), (torch.float16, "float16"), (torch.float64, "float64")):
            plans = emu.na_plans(*c.size, c.head_dim, *c.kernel, *c.dilation, dtype)
            for kind in ("logits", "aggregate", "scatter"):
                expected = launch_plan.na_dynamic_smem(kind, name, c.kernel, c.dilation, c.head_dim)
                if plans[kind] != expected:
                    mismatches.append(f"{kind} {name} {c.label}: C++ {plans[kind]} B, launch_plan.py {expected} B")
            if plans["threads"] != launch_plan.NA_THREADS:
                mismatches.append(f"threads {c.label}: C++ {plans['threads']}, launch_plan.py {launch_plan.NA_THREADS}")
    report.require("launch plans: launch_plan.py matches the C++ plans", not mismatches, "; ".join(mismatches[:5]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=None, help="reuse a build folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="float32 only")
    parser.add_argument("--full", action="store_true", help="float32 at every A2Mamba configuration")
    parser.add_argument("--bounds-check", action="store_true", help="guard pages around dynamic shared memory")
    parser.add_argument("--verbose", action="store_true", help="print every check, not only failures")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the reference runs at small sizes; a second thread only adds overhead
    # Every at::empty of the op bodies comes back filled with NaN, so an output element no kernel
    # writes fails the comparison (the op bodies take the deterministic flag as an argument).
    torch.use_deterministic_algorithms(True)
    Report.verbose = args.verbose
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        build_dir = args.build_dir or Path(tmp)
        emu = build(build_dir)
        built = time.monotonic()
        emu.set_bounds_check(args.bounds_check)
        report = Report()
        dtypes = [torch.float32] if args.quick else ALL_DTYPES
        check_deadlock_detection(build_dir, report)
        check_plans(emu, report)
        check_determinism(emu, report)
        check_na2d(emu, report, dtypes, args.quick, args.full)
        check_scan(emu, report, dtypes)
        check_unaligned_scan(emu, report)
    done = time.monotonic()
    print(
        f"{report.checks} checks, {report.failures} failure(s); "
        f"build {built - start:.0f} s, checks {done - built:.0f} s"
        + (" (bounds-checked shared memory)" if args.bounds_check else "")
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
