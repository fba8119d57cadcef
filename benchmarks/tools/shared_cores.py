"""Throughput on shared cores: a2mamba_n inference and neighbourhood attention while another process
keeps one core busy, against the same on a quiet machine.

    python -m benchmarks.tools.shared_cores --out benchmarks/results [--rounds 5] [--tiny]

Settings: torch threads 1 or 2, OpenMP's wait policy as it comes or `OMP_WAIT_POLICY=PASSIVE`,
and the machine quiet or one core busy (a process spinning on the last CPU). OpenMP reads its
wait policy when it starts, so every measurement is a fresh worker process with the setting's
environment; it builds the workloads, warms them up and times one call of each. Rounds are
passes: in each pass every setting runs one worker, so load from outside hits all settings
alike, and a setting's figure is the median over the passes.

The question it answers is the one the thread-settings table of the ops README states: whether
a parallel region collapses when one of its cores is taken (two threads slower than one), and
which settings avoid that. Writes shared-cores-<machine>.json and .md to --out; `--tiny` runs
toy sizes (a check of the tool, not a figure).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cases import machine
from benchmarks.cases.timing import Timing, measure_side_by_side
from benchmarks.tools.report_files import write_report

ROOT = Path(__file__).resolve().parents[2]
MODEL = "a2mamba_n"
SPIN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


@dataclass(frozen=True)
class Setting:
    threads: int
    passive: bool
    busy: bool

    @property
    def name(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        policy = "PASSIVE" if self.passive else "default wait"
        return f"{threads}, {policy}, {'one core busy' if self.busy else 'quiet'}"


SETTINGS = [Setting(t, p, b) for b in (False, True) for p in (False, True) for t in (1, 2)]


def worker(threads: int, tiny: bool) -> dict:
    """Seconds of one model inference call and one attention forward, after a warm-up call of each."""
    import torch

    from benchmarks.cases import targets
    from benchmarks.cases.shapes import TARGET_NA2D

    torch.set_num_threads(threads)
    batch, img = (1, 64) if tiny else (targets.INFERENCE_BATCH, 224)
    name = "a2mamba_test" if tiny else MODEL
    model = targets.model(name, "inference", batch, img_size=img)
    shape = TARGET_NA2D[0]
    attention = targets.attention(targets.with_batch(shape, 1 if tiny else 8), "forward", "cpu")
    timings = measure_side_by_side({"model": model.run, "attention": attention.run}, rounds=1)
    return {
        "model_s": timings["model"].median,
        "images": model.work,
        "attention_s": timings["attention"].median,
        "attention_gflop": attention.work,
    }


@contextlib.contextmanager
def busy_core(enabled: bool) -> Iterator[subprocess.Popen | None]:
    """A process spinning on the last CPU while the block runs (yielded; None when not enabled)."""
    if not enabled:
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", SPIN, str(max(os.sched_getaffinity(0)))])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def run_worker(setting: Setting, tiny: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if setting.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    command = [sys.executable, "-m", "benchmarks.tools.shared_cores", "--worker", "--threads", str(setting.threads)]
    with busy_core(setting.busy):
        done = subprocess.run(command + (["--tiny"] if tiny else []), cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker for {setting.name!r} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(samples: list[float], work: float) -> dict:
    """Median rate and the rates at the time quartiles (a rate is work per second)."""
    timing = Timing.of(samples)
    low, high = timing.rate_quartiles(work)
    return {"median": work / timing.median, "low": low, "high": high, "samples_s": samples}


def measure(rounds: int, tiny: bool) -> list[dict]:
    results: dict[Setting, list[dict]] = {s: [] for s in SETTINGS}
    for round_ in range(rounds):
        for setting in SETTINGS:
            results[setting].append(run_worker(setting, tiny))
        print(f"pass {round_ + 1}/{rounds} done", flush=True)
    rows = []
    for setting, runs in results.items():
        rows.append(
            {
                **dataclasses.asdict(setting),
                "name": setting.name,
                "img_per_s": summarise([r["model_s"] for r in runs], runs[0]["images"]),
                "attention_gflop_per_s": summarise([r["attention_s"] for r in runs], runs[0]["attention_gflop"]),
            }
        )
    return rows


def markdown(report: dict) -> str:
    base = next(r for r in report["rows"] if r["threads"] == 2 and not r["passive"] and not r["busy"])
    lines = [
        f"# Throughput on shared cores, {report['label']}",
        "",
        f"- {machine.one_line(report['machine'])}; commit {report['commit'] or 'unknown'}",
        f"- {report['rounds']} passes; each pass runs every setting once in a fresh process (warm-up call, "
        f"then one timed call per workload); medians over the passes, quartiles in brackets",
        f"- workloads: {report['model']} inference, batch {report['batch']}, and neighbourhood attention "
        f"forward at {report['attention_shape']}; 'one core busy': a process spinning on the last CPU",
        "",
        "| setting | img/s | vs 2 threads quiet | attention GFLOP/s | vs 2 threads quiet |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        img, att = r["img_per_s"], r["attention_gflop_per_s"]
        lines.append(
            f"| {r['name']} | {img['median']:.3g} ({img['low']:.3g}–{img['high']:.3g}) "
            f"| {img['median'] / base['img_per_s']['median']:.2f} "
            f"| {att['median']:.3g} ({att['low']:.3g}–{att['high']:.3g}) "
            f"| {att['median'] / base['attention_gflop_per_s']['median']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.shared_cores", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, help="folder for shared-cores-<machine>.json/.md")
    parser.add_argument("--rounds", type=int, default=5, help="passes over all settings (default 5)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the tool, measures nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.out is None:
        parser.error("--out is required")
    if args.rounds < 1:
        parser.error(f"--rounds must be positive, got {args.rounds}")
    if not hasattr(os, "sched_setaffinity"):
        parser.error("needs os.sched_setaffinity (Linux) to pin the busy process")
    args.label = machine.label_or_usage_error(parser)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.threads, args.tiny)))
        return 0
    from benchmarks.cases.shapes import TARGET_NA2D

    rows = measure(args.rounds, args.tiny)
    report = {
        "label": args.label,
        "commit": machine.commit(),
        "machine": machine.describe(),
        "rounds": args.rounds,
        "model": "a2mamba_test" if args.tiny else MODEL,
        "batch": 1 if args.tiny else 8,
        "attention_shape": TARGET_NA2D[0].name,
        "rows": rows,
    }
    write_report(args.out, f"shared-cores-{args.label}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
