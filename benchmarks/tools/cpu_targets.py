"""CPU speed targets, measured side by side in one run: kernels against the machine's own limits,
models against resnet50, and where the time of an a2mamba_n forward goes.

    python -m benchmarks.tools.cpu_targets --out benchmarks/results [--threads 2] [--rounds 5]

Every ratio compares figures of the same run, timed round-robin by
`benchmarks.cases.timing` with the same rounds for every contender:

- neighbourhood attention (`na2d_qk` with the positional bias, softmax,
  `na2d_av`) at the three local-stage shapes, forward and forward+backward,
  as GFLOP/s against the fp32 matmul GFLOP/s of the same run (FLOPs: the two
  products, see `benchmarks.cases.ops`); targets 25 % and 12 %;
- the scan forward as GB/s against a copy moving the same bytes; target 10 %;
- img/s at 224 px: inference batch 8 (a2mamba_n >= 2.0x resnet50, a2mamba_t
  >= 1.0x) and a training step at batch 16 (a2mamba_n >= 2.0x);
- a profile (torch.profiler, self CPU time by op) of one a2mamba_n batch-8
  forward.

Writes cpu-targets-<machine>.json, .md and (with matplotlib) .png to --out;
<machine> is `A2MAMBA_BENCH_MACHINE` or `cpu-<cores>core`. `--tiny` runs every
step at toy sizes: a check of the tool, not a figure. Exit status 0 whether or
not the targets are met (the report says which); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.cases import machine, targets
from benchmarks.cases.models import Setting, create_model, inference_step
from benchmarks.cases.shapes import TARGET_NA2D, TARGET_SCAN
from benchmarks.cases.targets import Contender
from benchmarks.cases.timing import measure_side_by_side
from benchmarks.tools import barchart
from benchmarks.tools.report_files import write_report

PROFILED_MODEL = "a2mamba_n"


@dataclass(frozen=True)
class Sizes:
    """What the run measures at: the targets' sizes, or toy ones for checking the tool."""

    op_batch: int = 8
    img_size: int = 224
    inference_batch: int = targets.INFERENCE_BATCH
    training_batch: int = targets.TRAINING_BATCH
    matmul_n: int = targets.MATMUL_N
    profile_rows: int = 20


TINY = Sizes(op_batch=1, img_size=64, inference_batch=1, training_batch=2, matmul_n=64, profile_rows=5)


@dataclass
class Target:
    name: str
    ratio: float
    threshold: float

    @property
    def met(self) -> bool:
        return self.ratio >= self.threshold


def measure(contenders: dict[str, Contender], rounds: int) -> tuple[list[dict], dict[str, float]]:
    """Rows of the report (rate at the median and at the quartiles of the time) and the rates."""
    timings = measure_side_by_side({name: c.run for name, c in contenders.items()}, rounds)
    rows = []
    for name, c in contenders.items():
        t = timings[name]
        rows.append(
            {
                "name": name,
                "unit": c.unit,
                "rate": c.rate(t),
                "rate_q1_q3": list(t.rate_quartiles(c.work)),
                "timing": t.as_dict(),
            }
        )
    return rows, {row["name"]: row["rate"] for row in rows}


def measure_kernels(sizes: Sizes, rounds: int, backend: str) -> tuple[list[dict], list[Target]]:
    contenders = {"matmul fp32": targets.matmul(sizes.matmul_n)}
    for shape in TARGET_NA2D:
        for mode in targets.ATTENTION:
            contenders[f"attention {shape.name} {mode}"] = targets.attention(
                targets.with_batch(shape, sizes.op_batch), mode, backend
            )
    for shape in TARGET_SCAN:
        scan, copy = targets.scan_and_copy(targets.with_batch(shape, sizes.op_batch), backend)
        contenders[f"scan {shape.name} forward"] = scan
        contenders[f"copy {shape.name}"] = copy
    rows, rate = measure(contenders, rounds)
    found = []
    for shape in TARGET_NA2D:
        for mode, threshold in targets.ATTENTION.items():
            ratio = rate[f"attention {shape.name} {mode}"] / rate["matmul fp32"]
            found.append(Target(f"attention {shape.name} {mode} / matmul", ratio, threshold))
    for shape in TARGET_SCAN:
        ratio = rate[f"scan {shape.name} forward"] / rate[f"copy {shape.name}"]
        found.append(Target(f"scan {shape.name} forward / copy", ratio, targets.SCAN))
    return rows, found


def measure_models(sizes: Sizes, rounds: int) -> tuple[list[dict], list[Target]]:
    rows, found = [], []
    for kind, batch, wanted in (
        ("inference", sizes.inference_batch, targets.INFERENCE),
        ("training", sizes.training_batch, targets.TRAINING),
    ):
        contenders = {
            f"{name} {kind} b{batch}": targets.model(name, kind, batch, sizes.img_size)
            for name in [*wanted, targets.BASELINE]
        }
        kind_rows, rate = measure(contenders, rounds)
        rows += kind_rows
        baseline = rate[f"{targets.BASELINE} {kind} b{batch}"]
        for name, threshold in wanted.items():
            ratio = rate[f"{name} {kind} b{batch}"] / baseline
            found.append(Target(f"{name} {kind} b{batch} / {targets.BASELINE}", ratio, threshold))
    return rows, found


def profile_forward(sizes: Sizes) -> dict:
    """Self CPU time by op of one forward of PROFILED_MODEL (after a warm-up forward)."""
    from torch.profiler import ProfilerActivity, profile

    setting = Setting("cpu", sizes.inference_batch, amp=False)
    step = inference_step(create_model(PROFILED_MODEL, setting), setting, img_size=sizes.img_size)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    ops = [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total_us,
            "calls": e.count,
        }
        for e in events
    ]
    return {"model": PROFILED_MODEL, "batch": sizes.inference_batch, "total_self_cpu_ms": total_us / 1e3, "ops": ops}


def markdown(report: dict, profile_rows: int) -> str:
    m = report["machine"]
    lines = [
        f"# CPU targets on {report['label']}",
        "",
        f"- {machine.one_line(m)}; a2mamba-ops {m.get('a2mamba_ops')} (backend `{report['backend']}`), "
        f"commit {report['commit'] or 'unknown'}",
        f"- one run, {report['rounds']} rounds per contender after a warm-up call, rounds interleaved; "
        f"{report['threads']} torch threads; sizes {report['sizes']}",
        "",
        "## Targets",
        "",
        "| target | measured | target | |",
        "|---|---:|---:|---|",
    ]
    for t in report["targets"]:
        lines.append(f"| {t['name']} | {t['ratio']:.3g} | >= {t['threshold']:g} | {'met' if t['met'] else 'MISSED'} |")
    met = sum(t["met"] for t in report["targets"])
    lines += ["", f"{met} of {len(report['targets'])} targets met.", "", "## Measurements", ""]
    lines += ["| contender | median | quartiles | unit | median time (ms) |", "|---|---:|---|---|---:|"]
    for row in report["measurements"]:
        low, high = row["rate_q1_q3"]
        median_ms = row["timing"]["median_s"] * 1e3
        lines.append(f"| {row['name']} | {row['rate']:.3g} | {low:.3g}–{high:.3g} | {row['unit']} | {median_ms:.2f} |")
    prof = report["profile"]
    lines += [
        "",
        f"## Where the time goes: {prof['model']} forward, batch {prof['batch']}",
        "",
        f"torch.profiler, self CPU time of one forward: {prof['total_self_cpu_ms']:.1f} ms in all.",
        "",
        "| op | self CPU ms | share | calls |",
        "|---|---:|---:|---:|",
    ]
    for op in prof["ops"][:profile_rows]:
        lines.append(f"| `{op['op']}` | {op['self_cpu_ms']:.1f} | {100 * op['share']:.1f} % | {op['calls']} |")
    rest = prof["ops"][profile_rows:]
    if rest:
        share = sum(op["share"] for op in rest)
        lines.append(f"| {len(rest)} other ops | {sum(op['self_cpu_ms'] for op in rest):.1f} | {100 * share:.1f} % | |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> bool:
    """Each target's measured ratio as a multiple of its threshold; False without matplotlib."""
    found = report["targets"]
    return barchart.save(
        path,
        [t["name"] for t in found],
        [t["ratio"] / t["threshold"] for t in found],
        [1.0] * len(found),
        "measured / target",
        f"CPU targets on {report['label']} (torch threads: {report['threads']})",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.cpu_targets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for cpu-targets-<machine>.json/.md/.png")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per contender (default 5)")
    parser.add_argument(
        "--threads", type=int, default=targets.THREADS, help=f"torch threads (default {targets.THREADS})"
    )
    parser.add_argument("--backend", default="cpu", help="a2mamba-ops backend for the kernels (default cpu)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the tool, measures nothing")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads must be positive, got {args.rounds} and {args.threads}")
    import a2mamba_ops

    if args.backend not in a2mamba_ops.available_backends():
        parser.error(f"--backend must be one of {a2mamba_ops.available_backends()}, got {args.backend!r}")
    args.label = machine.label_or_usage_error(parser)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = TINY if args.tiny else Sizes()
    print(f"cpu_targets: {args.rounds} rounds, {args.threads} threads, sizes {sizes}", flush=True)
    kernel_rows, kernel_targets = measure_kernels(sizes, args.rounds, args.backend)
    print("kernels measured", flush=True)
    model_rows, model_targets = measure_models(sizes, args.rounds)
    print("models measured", flush=True)
    report = {
        "label": args.label,
        "commit": machine.commit(),
        "machine": machine.describe(),
        "backend": args.backend,
        "threads": args.threads,
        "rounds": args.rounds,
        "sizes": dataclasses.asdict(sizes),
        "targets": [dict(dataclasses.asdict(t), met=t.met) for t in kernel_targets + model_targets],
        "measurements": kernel_rows + model_rows,
        "profile": profile_forward(sizes),
    }
    stem = f"cpu-targets-{args.label}"
    write_report(args.out, stem, report, markdown(report, sizes.profile_rows))
    if plot(report, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
