"""GPU kernel benchmark: achieved bandwidth of the cuda backend at A2Mamba batch-128 shapes.

    python benchmarks/gpu_kernels.py --out DIR [--dtypes bf16,fp32] [--iters 10] [--quick]

For every op (na2d_qk, na2d_av, selective_scan_state), shape and direction it
times the cuda backend with CUDA events and computes the achieved bandwidth,
bytes = every input read once + every output written once (a lower bound on
the traffic, so the figure is conservative). The card's copy bandwidth (a
large device-to-device copy, read + write) is measured in the same run and
each kernel is reported as a percentage of it, next to its speedup over the
plain-PyTorch reference backend on the same card. Writes gpu_kernels.json and
gpu_kernels.md to --out. Needs only torch and a2mamba_ops (no nox, no asv).
Exit status 1 when any case failed (the others are still measured).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

BATCH = 128
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Spec 5.2: branch 2 dilation = min(size // K, K).
NA2D_SHAPES = [  # (stage, size, heads per branch, head dim, K, dilation)
    ("s1", 56, 1, 24, 11, 1),
    ("s1", 56, 1, 32, 11, 5),
    ("s1", 56, 2, 24, 11, 1),
    ("s2", 28, 2, 24, 9, 1),
    ("s2", 28, 2, 32, 9, 3),
    ("s3", 14, 4, 32, 7, 2),
    ("s3", 14, 8, 32, 7, 1),
]
SCAN_SHAPES = [  # (stage, D, L), N = 1
    ("s1", 32, 3136),
    ("s1", 48, 3136),
    ("s2", 96, 784),
    ("s3", 256, 196),
    ("s3", 448, 196),
]


@dataclass
class Result:
    op: str
    shape: str
    dtype: str
    direction: str
    backend: str
    ms: float | None = None
    bytes: int = 0
    gbps: float | None = None
    pct_of_copy: float | None = None
    speedup_vs_reference: float | None = None
    error: str | None = None


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _time_ms(fn, iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def copy_bandwidth_gbps(iters: int) -> float:
    """Device-to-device copy of 1 GiB: bytes read + bytes written per second."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda").fill_(1.0)
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), iters)
    return 2 * nbytes(src) / (ms * 1e-3) / 1e9


def na2d_cases(dtype):
    """(op, shape name, forward fn, backward fn, forward bytes, backward bytes) per shape."""
    import a2mamba_ops

    for stage, size, heads, dim, kernel, dil in NA2D_SHAPES:
        name = f"{stage} b{BATCH} {size}x{size} h{heads} c{dim} K{kernel} d{dil}"
        shape = (BATCH, heads, size, size, dim)
        kk = kernel * kernel
        q = (torch.randn(shape, device="cuda") * dim**-0.5).to(dtype).requires_grad_()
        k = torch.randn(shape, device="cuda").to(dtype).requires_grad_()
        rpb = (torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, device="cuda") * 0.02).to(dtype).requires_grad_()
        attn = torch.randn(*shape[:4], kk, device="cuda").softmax(-1).to(dtype).requires_grad_()
        v = torch.randn(shape, device="cuda").to(dtype).requires_grad_()
        g_attn = torch.randn(*shape[:4], kk, device="cuda").to(dtype)
        g_out = torch.randn(shape, device="cuda").to(dtype)

        qk = functools.partial(a2mamba_ops.na2d_qk, q, k, kernel, dil, rpb=rpb)
        av = functools.partial(a2mamba_ops.na2d_av, attn, v, kernel, dil)

        yield (
            "na2d_qk",
            name,
            qk,
            (g_attn, (q, k, rpb)),
            nbytes(q, k, rpb, g_attn),
            nbytes(g_attn, q, k) + nbytes(q, k, rpb),
        )
        yield (
            "na2d_av",
            name,
            av,
            (g_out, (attn, v)),
            nbytes(attn, v, g_out),
            nbytes(g_out, attn, v) + nbytes(attn, v),
        )


def scan_cases(dtype):
    import a2mamba_ops

    for stage, D, L in SCAN_SHAPES:
        name = f"{stage} b{BATCH} D{D} N1 L{L}"
        u = torch.randn(BATCH, D, L, device="cuda").to(dtype).requires_grad_()
        delta = (torch.randn(BATCH, D, L, device="cuda") * 0.5).to(dtype).requires_grad_()
        A = -torch.ones(D, 1, device="cuda").requires_grad_()
        B = torch.randn(BATCH, 1, L, device="cuda").to(dtype).requires_grad_()
        bias = (torch.rand(D, device="cuda") * -4).requires_grad_()
        g_h = torch.randn(BATCH, D, 1, L, device="cuda")

        scan = functools.partial(a2mamba_ops.selective_scan_state, u, delta, A, B, bias)

        h_bytes = nbytes(g_h)
        yield (
            "selective_scan_state",
            name,
            scan,
            (g_h, (u, delta, A, B, bias)),
            nbytes(u, delta, A, B, bias) + h_bytes,
            # dh and h read, the inputs read, one gradient per input written
            2 * h_bytes + 2 * nbytes(u, delta, A, B, bias),
        )


def measure(backend: str, fwd, grad_spec, iters: int) -> tuple[float, float]:
    import a2mamba_ops

    grad_out, leaves = grad_spec
    with a2mamba_ops.use_backend(backend):
        with torch.no_grad():
            fwd_ms = _time_ms(fwd, iters)
        out = fwd()
        bwd_ms = _time_ms(functools.partial(torch.autograd.grad, out, leaves, grad_out, retain_graph=True), iters)
    return fwd_ms, bwd_ms


def run(dtypes: list[str], iters: int, with_reference: bool, save) -> tuple[list[Result], float]:
    copy_gbps = copy_bandwidth_gbps(iters)
    results: list[Result] = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for cases in (na2d_cases, scan_cases):
            gen = cases(dtype)
            while True:
                try:
                    op, shape, fwd, grad_spec, fwd_bytes, bwd_bytes = next(gen)
                except StopIteration:
                    break
                except Exception:  # building inputs failed (e.g. out of memory): record and go on
                    results.append(Result("?", "?", dtype_name, "-", "cuda", error=traceback.format_exc(limit=2)))
                    break
                timings = {}
                for backend in ("cuda", "reference") if with_reference else ("cuda",):
                    try:
                        timings[backend] = measure(backend, fwd, grad_spec, iters if backend == "cuda" else 3)
                    except Exception:
                        timings[backend] = None
                        if backend == "cuda":
                            results.append(
                                Result(op, shape, dtype_name, "fwd+bwd", backend, error=traceback.format_exc(limit=3))
                            )
                    torch.cuda.empty_cache()
                if timings.get("cuda") is None:
                    continue
                for i, (direction, moved) in enumerate((("fwd", fwd_bytes), ("bwd", bwd_bytes))):
                    ms = timings["cuda"][i]
                    gbps = moved / (ms * 1e-3) / 1e9
                    ref = timings.get("reference")
                    results.append(
                        Result(
                            op,
                            shape,
                            dtype_name,
                            direction,
                            "cuda",
                            ms=ms,
                            bytes=moved,
                            gbps=gbps,
                            pct_of_copy=100 * gbps / copy_gbps,
                            speedup_vs_reference=(ref[i] / ms) if ref is not None else None,
                        )
                    )
                save(results, copy_gbps)
                print(
                    f"{op:21s} {shape:40s} {dtype_name} fwd {timings['cuda'][0]:8.3f} ms  "
                    f"bwd {timings['cuda'][1]:8.3f} ms",
                    flush=True,
                )
    return results, copy_gbps


def markdown(results: list[Result], copy_gbps: float, device: str) -> str:
    lines = [
        f"# a2mamba-ops CUDA kernels on {device}",
        "",
        f"Copy bandwidth (1 GiB device-to-device, read + write): {copy_gbps:.0f} GB/s. "
        "Bytes = inputs read once + outputs written once.",
        "",
        "| op | shape | dtype | dir | ms | GB/s | % of copy | x reference |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.op} | {r.shape} | {r.dtype} | {r.direction} | FAILED | | | |")
            continue
        speedup = f"{r.speedup_vs_reference:.1f}" if r.speedup_vs_reference else "-"
        lines.append(
            f"| {r.op} | {r.shape} | {r.dtype} | {r.direction} | {r.ms:.3f} | {r.gbps:.0f} | "
            f"{r.pct_of_copy:.0f} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_kernels.json and gpu_kernels.md")
    parser.add_argument("--dtypes", default="bf16", help="comma-separated subset of bf16,fp16,fp32")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference backend (no speedups)")
    args = parser.parse_args(argv)

    import a2mamba_ops

    if not torch.cuda.is_available() or "cuda" not in a2mamba_ops.available_backends():
        print("gpu_kernels: needs a CUDA device and a2mamba-ops built with CUDA kernels", file=sys.stderr)
        return 1
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        parser.error(f"--dtypes must be a subset of {sorted(DTYPES)}, got {unknown}")
    torch.manual_seed(0)
    device = torch.cuda.get_device_name()
    args.out.mkdir(parents=True, exist_ok=True)

    def save(results: list[Result], copy_gbps: float) -> str:
        # Called after every case, so that a run cut short by a timeout still leaves its figures.
        payload = {
            "device": device,
            "torch": torch.__version__,
            "batch": BATCH,
            "copy_gbps": copy_gbps,
            "results": [asdict(r) for r in results],
        }
        (args.out / "gpu_kernels.json").write_text(json.dumps(payload, indent=2))
        table = markdown(results, copy_gbps, device)
        (args.out / "gpu_kernels.md").write_text(table)
        return table

    results, copy_gbps = run(dtypes, args.iters, not args.no_reference, save)
    table = save(results, copy_gbps)
    print(table)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"FAILED {r.op} {r.shape} {r.dtype}:\n{r.error}", file=sys.stderr)
    return 1 if failed or any(r.gbps is not None and not math.isfinite(r.gbps) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
