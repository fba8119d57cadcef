"""Check the CUDA kernels' logic on a machine without a GPU.

    python packages/a2mamba-ops/tools/cuda_emulation/check_kernels.py [--build-dir DIR] [--quick]

The kernels of csrc/cuda are compiled by the host C++ compiler against
fake_cuda.h (one OS thread per CUDA thread; barriers for __syncthreads and
warp shuffles), launched on small CPU tensors exactly as the .cu launchers do,
and compared with the plain-PyTorch reference in float64. This exercises all
index arithmetic (tiles, dilation groups, borders, channel chunks, shuffle
scans, the dB and drpb reductions) but nothing about speed, memory coalescing
or the real hardware: run tests/test_cuda.py on a GPU for that.
Takes ~2-3 minutes to compile and ~1 minute to run on 2 cores. Exit status 1 on
any mismatch.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

import torch
import torch.utils.cpp_extension as cpp_extension

from a2mamba_ops.reference import na2d_av_ref, na2d_qk_ref, selective_scan_state_ref

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"

# (shape (batch, heads, H, W, dim), kernel, dilation): unequal dilation groups, partial tiles,
# rectangular kernels, several channel chunks, K = 13.
NA2D_CASES = [
    ((1, 2, 13, 17, 20), (5, 3), (2, 3)),
    ((1, 1, 9, 9, 9), (9, 9), (1, 1)),
    ((1, 1, 19, 10, 17), (7, 3), (2, 3)),
    ((2, 3, 11, 13, 40), (3, 5), (1, 2)),
    ((1, 2, 27, 26, 36), (13, 13), (2, 2)),
]
# (batch, D, N, L, G, deterministic, bias, softplus): rows not a multiple of 8, several 128-step chunks.
SCAN_CASES = [
    (2, 5, 1, 77, 1, False, True, True),
    (1, 12, 3, 300, 3, False, True, True),
    (2, 9, 2, 40, 3, True, False, False),
    (1, 16, 1, 130, 16, True, True, True),
    (3, 10, 1, 33, 2, False, True, True),
]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 1.5e-2}


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

    def check(self, name: str, actual, expected, tol: float) -> None:
        error = relative_error(actual, expected)
        ok = error <= tol and bool(torch.isfinite(actual).all())
        self.failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: relative error {error:.2e} (tolerance {tol:.0e})", flush=True)


def qk_ref(q, k, rpb, kernel, dil):
    return na2d_qk_ref(q, k, kernel, dil, rpb=rpb)


def check_na2d(emu, report: Report, dtypes) -> None:
    for dtype in dtypes:
        tol = TOLERANCE[dtype]
        for shape, kernel, dil in NA2D_CASES:
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
            report.check("  dq", dq, ref_dq, tol)
            report.check("  dk", dk, ref_dk, tol)
            report.check("  drpb", drpb, ref_drpb, tol)
            weights = torch.randn(attn.shape).softmax(-1).to(dtype)
            grad_out = torch.randn(shape).to(dtype)
            ref, (ref_da, ref_dv) = reference_with_grads(
                functools.partial(na2d_av_ref, kernel_size=kernel, dilation=dil), [weights, v], grad_out
            )
            report.check(f"na2d_av {name}", emu.av_fwd(weights, v, *kernel, *dil), ref, tol)
            dattn, dv = emu.av_bwd(grad_out, weights, v, *kernel, *dil)
            report.check("  dattn", dattn, ref_da, tol)
            report.check("  dv", dv, ref_dv, tol)


def check_scan(emu, report: Report, dtypes) -> None:
    for dtype in dtypes:
        state = torch.float64 if dtype == torch.float64 else torch.float32
        tol = TOLERANCE[dtype]
        for batch, D, N, L, G, deterministic, with_bias, softplus in SCAN_CASES:
            u = torch.randn(batch, D, L).to(dtype)
            delta = torch.randn(batch, D, L) * 0.5 - 1.0
            delta = (delta if softplus else delta.abs()).to(dtype)
            A = -torch.exp(torch.randn(D, N) * 0.5).to(state)
            B = torch.randn(batch, G, N, L).to(dtype)
            bias = (torch.randn(D) * 0.5).to(state) if with_bias else None
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
                report.check(f"  {label}", got, expected, tol)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=None, help="reuse a build folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="float32 only")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # the emulation already runs one OS thread per CUDA thread
    with tempfile.TemporaryDirectory() as tmp:
        emu = build(args.build_dir or Path(tmp))
        report = Report()
        low = [torch.float32] if args.quick else [torch.float64, torch.float32, torch.float16, torch.bfloat16]
        check_na2d(emu, report, low)
        check_scan(emu, report, low)
    print(f"{report.failures} failure(s)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
