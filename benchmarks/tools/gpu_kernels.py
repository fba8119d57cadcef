"""GPU kernel report: achieved bandwidth of the cuda backend at A2Mamba shapes, batch 128.

    python -m benchmarks.tools.gpu_kernels --out DIR [--dtypes bf16,fp32] [--all-shapes]

Run from the repository root. For every op, shape and direction (forward, and
backward alone) it times the cuda backend and computes the achieved bandwidth,
bytes = every input read once + every output written once (a lower bound on
the traffic, so the figure is conservative). The card's copy bandwidth is
measured in the same run and each kernel is reported as a percentage of it,
next to its speed-up over the plain-PyTorch reference backend on the same card
(both timed the same number of rounds; medians, with quartiles in the JSON).
Shapes, inputs, byte counts and timing are the ones every benchmark tool uses
(`benchmarks/cases/`).

Writes gpu_kernels.json and gpu_kernels.md to --out after every case, so a run
cut short by a timeout still leaves its figures, and at the end gpu_kernels.png
(each case against its target) where matplotlib is installed. Needs only torch and
a2mamba_ops (no nox, no asv). `--device cpu` runs the same report on the CPU
backend: a smoke test of this tool for machines without a GPU, not a figure to
quote. Exit status 1 when any case failed (the others are still measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.cases import machine
from benchmarks.cases.ops import BACKWARD, make_case
from benchmarks.cases.shapes import NA2D_SHAPES, QUICK_NA2D, SCAN_SHAPES
from benchmarks.cases.timing import copy_bandwidth_gbps, measure
from benchmarks.tools import barchart

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Issue 3's targets, as a share of the copy bandwidth measured in the same run.
TARGET_PCT = {"scan": 70.0, "na2d_qk": 50.0, "na2d_av": 50.0}
TARGET_SPEEDUP = 5.0  # over the reference backend on the same card
# (report direction, op_cases mode)
DIRECTIONS = (("fwd", "forward"), ("bwd", BACKWARD))


@dataclass
class Result:
    op: str
    shape: str
    dtype: str
    direction: str
    backend: str
    ms: float | None = None  # median
    ms_q1_q3: tuple[float, float] | None = None
    bytes: int = 0
    gbps: float | None = None
    pct_of_copy: float | None = None
    speedup_vs_reference: float | None = None
    error: str | None = None


def shapes(batch: int, all_shapes: bool, pattern: str | None) -> list[tuple[str, object]]:
    """(op, shape) pairs: the tiny model's branches (or every listed width) and every scan."""
    na2d = NA2D_SHAPES if all_shapes else [s for s in NA2D_SHAPES if s.name in QUICK_NA2D]
    pairs = [(op, s) for s in na2d for op in ("na2d_qk", "na2d_av")] + [("scan", s) for s in SCAN_SHAPES]
    pairs = [(op, dataclasses.replace(s, batch=batch)) for op, s in pairs]
    if pattern:
        pairs = [(op, s) for op, s in pairs if re.search(pattern, f"{op} {s.name}")]
    return pairs


def measure_op(op: str, shape, dtype_name: str, backend: str, device: str, repeats: int) -> list[Result]:
    """One Result per direction; an exception in one direction becomes that Result's error."""
    results = []
    for direction, mode in DIRECTIONS:
        result = Result(op, shape.name, dtype_name, direction, backend)
        try:
            case = make_case(op, shape, mode, backend, device, DTYPES[dtype_name])
            timing = measure(case.run, rounds=repeats, device=device)
            seconds = timing.median
            result.ms = seconds * 1e3
            result.ms_q1_q3 = (timing.q1 * 1e3, timing.q3 * 1e3)
            result.bytes = case.bytes_moved
            result.gbps = case.bytes_moved / seconds / 1e9
        except Exception:  # out of memory, a kernel error: record it and go on with the next case
            result.error = traceback.format_exc(limit=3)
        finally:
            case = None
            if device == "cuda":
                torch.cuda.empty_cache()
        results.append(result)
    return results


def run(args, save) -> tuple[list[Result], float]:
    device = args.device
    kernel_backend = "cuda" if device == "cuda" else "cpu"
    copy_gbps = copy_bandwidth_gbps(device, rounds=args.repeats)
    results: list[Result] = []
    for dtype_name in args.dtypes:
        for op, shape in shapes(args.batch, args.all_shapes, args.shapes):
            timed = measure_op(op, shape, dtype_name, kernel_backend, device, args.repeats)
            if args.reference:
                reference = measure_op(op, shape, dtype_name, "reference", device, args.repeats)
                for mine, ref in zip(timed, reference, strict=True):
                    if mine.ms and ref.ms:
                        mine.speedup_vs_reference = ref.ms / mine.ms
            for r in timed:
                if r.gbps is not None:
                    r.pct_of_copy = 100 * r.gbps / copy_gbps
            results += timed
            save(results, copy_gbps)
            fwd, bwd = (f"{r.ms:8.3f} ms" if r.ms is not None else "  FAILED  " for r in timed)
            print(f"{op:8s} {shape.name:28s} {dtype_name} fwd {fwd}  bwd {bwd}", flush=True)
    return results, copy_gbps


def markdown(results: list[Result], copy_gbps: float, device: str, batch: int) -> str:
    lines = [
        f"# a2mamba-ops kernels on {device}, batch {batch}",
        "",
        f"Copy bandwidth (read + write): {copy_gbps:.0f} GB/s. "
        "Bytes = inputs read once + outputs written once; bwd = the backward pass alone. "
        f"`<` marks a miss: under {TARGET_PCT['scan']:.0f} % of copy (scan) or {TARGET_PCT['na2d_qk']:.0f} % "
        f"(na2d), under {TARGET_SPEEDUP:.0f}x the reference.",
        "",
        "| op | shape | dtype | dir | ms | GB/s | % of copy | x reference |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.op} | {r.shape} | {r.dtype} | {r.direction} | FAILED | | | |")
            continue
        speedup = "-"
        if r.speedup_vs_reference:
            speedup = f"{r.speedup_vs_reference:.1f}" + (" <" if r.speedup_vs_reference < TARGET_SPEEDUP else "")
        share = f"{r.pct_of_copy:.0f}" + (" <" if r.pct_of_copy < TARGET_PCT[r.op] else "")
        lines.append(
            f"| {r.op} | {r.shape} | {r.dtype} | {r.direction} | {r.ms:.3f} | {r.gbps:.0f} | {share} | {speedup} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[Result], path: Path, title: str) -> bool:
    """Each case's share of the copy bandwidth against its target; False without matplotlib."""
    rows = [r for r in results if r.pct_of_copy is not None]
    return barchart.save(
        path,
        [f"{r.op} {r.shape} {r.dtype} {r.direction}" for r in rows],
        [r.pct_of_copy for r in rows],
        [TARGET_PCT[r.op] for r in rows],
        "% of copy bandwidth",
        title,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.gpu_kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_kernels.json and gpu_kernels.md")
    parser.add_argument("--dtypes", default="bf16", help="comma-separated subset of bf16,fp16,fp32 (default bf16)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls per case and backend (the median is reported)"
    )
    parser.add_argument("--all-shapes", action="store_true", help="every listed width, not only the tiny model's")
    parser.add_argument("--shapes", metavar="REGEX", help="only the cases whose 'op shape-name' matches")
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="skip the speed-ups")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: smoke test of this tool")
    args = parser.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in args.dtypes if d not in DTYPES]
    if unknown or not args.dtypes:
        parser.error(f"--dtypes must be a non-empty subset of {sorted(DTYPES)}, got {unknown or args.dtypes}")
    if args.batch < 1 or args.repeats < 1:
        parser.error(f"--batch and --repeats must be positive, got {args.batch} and {args.repeats}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import a2mamba_ops

    if args.device == "cuda" and (not torch.cuda.is_available() or "cuda" not in a2mamba_ops.available_backends()):
        print("gpu_kernels: needs a CUDA device and a2mamba-ops built with CUDA kernels", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (smoke test)"
    args.out.mkdir(parents=True, exist_ok=True)

    def save(results: list[Result], copy_gbps: float) -> str:
        payload = {
            "device": name,
            "commit": machine.commit(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "a2mamba_ops": a2mamba_ops.__version__,
            "batch": args.batch,
            "copy_gbps": copy_gbps,
            "results": [asdict(r) for r in results],
        }
        (args.out / "gpu_kernels.json").write_text(json.dumps(payload, indent=2))
        table = markdown(results, copy_gbps, name, args.batch)
        (args.out / "gpu_kernels.md").write_text(table)
        return table

    results, copy_gbps = run(args, save)
    print(save(results, copy_gbps))
    if plot(results, args.out / "gpu_kernels.png", f"a2mamba-ops kernels on {name}, batch {args.batch}"):
        print(f"plot: {args.out / 'gpu_kernels.png'}")
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"FAILED {r.op} {r.shape} {r.dtype} {r.direction}:\n{r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
