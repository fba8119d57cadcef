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
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.cases import machine
from benchmarks.cases.models import Setting, create_model, inference_step, train_step
from benchmarks.cases.ops import make_attention_case, make_case
from benchmarks.cases.shapes import TARGET_NA2D, TARGET_SCAN
from benchmarks.cases.timing import Timing, measure_side_by_side

ATTENTION_TARGETS = {"forward": 0.25, "forward_backward": 0.12}
SCAN_TARGET = 0.10
INFERENCE_TARGETS = {"a2mamba_n": 2.0, "a2mamba_t": 1.0}
TRAINING_TARGETS = {"a2mamba_n": 2.0}
BASELINE = "resnet50"
PROFILED_MODEL = "a2mamba_n"


@dataclass(frozen=True)
class Sizes:
    """What the run measures at: the targets' sizes, or toy ones for checking the tool."""

    op_batch: int = 8
    img_size: int = 224
    inference_batch: int = 8
    training_batch: int = 16
    matmul_n: int = 1024
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


def _rate_row(name: str, timing: Timing, work: float, unit: str) -> dict:
    """A contender's rate (work per second) at the median, and at the quartiles of its time."""
    return {
        "name": name,
        "unit": unit,
        "rate": work / timing.median,
        "rate_q1_q3": [work / timing.q3, work / timing.q1],
        "timing": timing.as_dict(),
    }


def measure_kernels(sizes: Sizes, rounds: int, backend: str) -> tuple[list[dict], list[Target]]:
    n = sizes.matmul_n
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    contenders = {"matmul fp32": lambda: torch.mm(a, b, out=c)}
    work = {"matmul fp32": (2 * n**3 / 1e9, "GFLOP/s")}
    for shape in TARGET_NA2D:
        shape = dataclasses.replace(shape, batch=sizes.op_batch)
        for mode in ATTENTION_TARGETS:
            case = make_attention_case(shape, mode, backend)
            name = f"attention {shape.name} {mode}"
            contenders[name] = case.run
            work[name] = (case.flops / 1e9, "GFLOP/s")
    for shape in TARGET_SCAN:
        shape = dataclasses.replace(shape, batch=sizes.op_batch)
        case = make_case("scan", shape, "forward", backend)
        src = torch.empty(case.bytes_moved // 2, dtype=torch.uint8)
        dst = torch.empty_like(src)
        contenders[f"scan {shape.name} forward"] = case.run
        contenders[f"copy {shape.name}"] = lambda dst=dst, src=src: dst.copy_(src)
        work[f"scan {shape.name} forward"] = (case.bytes_moved / 1e9, "GB/s")
        work[f"copy {shape.name}"] = (2 * src.numel() / 1e9, "GB/s")
    timings = measure_side_by_side(contenders, rounds)
    rows = [_rate_row(name, timings[name], *work[name]) for name in contenders]
    rate = {row["name"]: row["rate"] for row in rows}
    targets = []
    for shape in TARGET_NA2D:
        for mode, threshold in ATTENTION_TARGETS.items():
            ratio = rate[f"attention {shape.name} {mode}"] / rate["matmul fp32"]
            targets.append(Target(f"attention {shape.name} {mode} / matmul", ratio, threshold))
    for shape in TARGET_SCAN:
        ratio = rate[f"scan {shape.name} forward"] / rate[f"copy {shape.name}"]
        targets.append(Target(f"scan {shape.name} forward / copy", ratio, SCAN_TARGET))
    return rows, targets


def measure_models(sizes: Sizes, rounds: int) -> tuple[list[dict], list[Target]]:
    rows, targets = [], []
    for kind, batch, wanted, make_step in (
        ("inference", sizes.inference_batch, INFERENCE_TARGETS, inference_step),
        ("training", sizes.training_batch, TRAINING_TARGETS, train_step),
    ):
        setting = Setting("cpu", batch, amp=False)
        steps = {}
        for name in [*wanted, BASELINE]:
            steps[name] = make_step(create_model(name, setting), setting, img_size=sizes.img_size)
        timings = measure_side_by_side(steps, rounds)
        rate = {}
        for name, timing in timings.items():
            row = _rate_row(f"{name} {kind} b{batch}", timing, batch, "img/s")
            rows.append(row)
            rate[name] = row["rate"]
        for name, threshold in wanted.items():
            targets.append(Target(f"{name} {kind} b{batch} / {BASELINE}", rate[name] / rate[BASELINE], threshold))
        del steps
    return rows, targets


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
        f"- {machine.one_line(m)}; a2mamba-ops {m.get('a2mamba_ops')} (backend `{report['backend']}`)",
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
    """Each target's measured ratio as a share of its threshold; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    targets = report["targets"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(targets) + 1.3))
    y = list(range(len(targets)))
    ax.barh(
        y,
        [t["ratio"] / t["threshold"] for t in targets],
        color=["tab:green" if t["met"] else "tab:red" for t in targets],
    )
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y, [t["name"] for t in targets], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("measured / target (1 = target; green: met)")
    ax.set_title(f"CPU targets on {report['label']} (torch threads: {report['threads']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.cpu_targets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for cpu-targets-<machine>.json/.md/.png")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per contender (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--backend", default="cpu", help="a2mamba-ops backend for the kernels (default cpu)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the tool, measures nothing")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error(f"--rounds and --threads must be positive, got {args.rounds} and {args.threads}")
    import a2mamba_ops

    if args.backend not in a2mamba_ops.available_backends():
        parser.error(f"--backend must be one of {a2mamba_ops.available_backends()}, got {args.backend!r}")
    try:
        args.label = machine.label()
    except ValueError as exc:
        parser.error(str(exc))
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
        "machine": machine.describe(),
        "backend": args.backend,
        "threads": args.threads,
        "rounds": args.rounds,
        "sizes": dataclasses.asdict(sizes),
        "targets": [dict(dataclasses.asdict(t), met=t.met) for t in kernel_targets + model_targets],
        "measurements": kernel_rows + model_rows,
        "profile": profile_forward(sizes),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"cpu-targets-{args.label}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report, sizes.profile_rows)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    if plot(report, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
