"""Turn a pytest-benchmark JSON of the ops suite into a markdown table.

One row per op, shape, mode and device, one time column per backend, and the
speed-up of each native backend over the reference:

    python benchmarks/summarize.py benchmarks/results/ops-cpu.json -o benchmarks/results/ops-cpu.md

`--stat` picks the statistic (default `min`: on a shared two-core machine the
fastest round is the least disturbed one); `--target` marks rows whose
forward_backward speed-up falls short of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

NATIVE = ("cpu", "cuda", "natten")
BACKEND_ORDER = ("reference", "cpu", "cuda", "natten")


def load_rows(report: dict, stat: str) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """{(op, shape, mode, device): {backend: seconds}} from a pytest-benchmark report."""
    rows: dict[tuple[str, str, str, str], dict[str, float]] = defaultdict(dict)
    for bench in report.get("benchmarks", []):
        info = bench.get("extra_info", {})
        try:
            key = (info["op"], info["shape"], info["mode"], info["device"])
            rows[key][info["backend"]] = float(bench["stats"][stat])
        except KeyError as exc:
            raise ValueError(f"benchmark {bench.get('name')!r} lacks {exc} (not from test_ops_bench.py?)") from None
    return rows


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.2f}"


def _machine_lines(report: dict) -> list[str]:
    info = report.get("machine_info", {})
    stack = info.get("a2mamba", {})
    commit = report.get("commit_info", {})
    lines = [
        f"- CPU: {stack.get('cpu_model') or info.get('cpu', {}).get('brand_raw', '?')}, "
        f"{stack.get('cpu_cores', '?')} cores, {stack.get('torch_threads', '?')} torch threads, "
        f"{stack.get('memory_gib', '?')} GiB",
        f"- torch {stack.get('torch', '?')}, Python {info.get('python_version', '?')}, "
        f"a2mamba-ops {stack.get('a2mamba_ops', '?')} (backends {', '.join(stack.get('backends', []))})",
    ]
    if stack.get("gpu"):
        lines.append(f"- GPU: {stack['gpu']}")
    if commit.get("id"):
        dirty = " (uncommitted changes)" if commit.get("dirty") else ""
        lines.append(f"- commit {commit['id'][:10]}{dirty}, run {report.get('datetime', '?')}")
    return lines


def render(report: dict, stat: str = "min", target: float | None = None) -> str:
    rows = load_rows(report, stat)
    backends = [b for b in BACKEND_ORDER if any(b in times for times in rows.values())]
    natives = [b for b in backends if b in NATIVE]
    header = ["op", "shape", "mode", "device"] + [f"{b} (ms)" for b in backends] + [f"{b} speed-up" for b in natives]
    lines = ["# a2mamba-ops benchmark", "", *_machine_lines(report), ""]
    lines.append(f"Times are the {stat} over rounds of one call; speed-up = reference time / backend time.")
    if target is not None:
        lines.append(f"Rows marked `<` miss the {target:g}x target for forward_backward.")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shortfalls = 0
    for (op, shape, mode, device), times in rows.items():
        cells = [op, shape, mode, device] + [_ms(times.get(b)) for b in backends]
        for b in natives:
            if "reference" in times and b in times:
                ratio = times["reference"] / times[b]
                miss = target is not None and mode == "forward_backward" and ratio < target
                shortfalls += miss
                cells.append(f"{ratio:.1f}x" + (" <" if miss else ""))
            else:
                cells.append("—")
        lines.append("| " + " | ".join(cells) + " |")
    if target is not None:
        lines += ["", f"forward_backward rows below {target:g}x: {shortfalls}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("-o", "--output", type=Path, help="markdown file to write (default: stdout)")
    parser.add_argument("--stat", default="min", choices=("min", "median", "mean"), help="statistic per benchmark")
    parser.add_argument("--target", type=float, default=5.0, help="forward_backward speed-up to flag (0: none)")
    args = parser.parse_args(argv)
    report = json.loads(args.json.read_text())
    text = render(report, args.stat, args.target or None)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
