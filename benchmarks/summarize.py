"""Turn a pytest-benchmark JSON of the ops suite into a markdown table.

One row per op, shape, mode and device, one time column per backend, and the
speed-up of each native backend over the reference:

    python benchmarks/summarize.py benchmarks/results/ops-cpu.json -o benchmarks/results/ops-cpu.md

Several JSON files may be given (e.g. a full run and a rerun of `-k s3`): a
later file's figure replaces an earlier one's for the same op, shape, mode,
device and backend.

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


def load_rows(report: dict, stat: str, rows: dict | None = None) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """{(op, shape, mode, device): {backend: seconds}} from a pytest-benchmark report (added to `rows`)."""
    rows = defaultdict(dict, rows or {})
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


def render(report: dict, stat: str = "min", target: float | None = None, reruns: tuple[dict, ...] = ()) -> str:
    rows = load_rows(report, stat)
    for rerun in reruns:
        rows = load_rows(rerun, stat, rows)
    backends = [b for b in BACKEND_ORDER if any(b in times for times in rows.values())]
    natives = [b for b in backends if b in NATIVE]
    header = ["op", "shape", "mode", "device"] + [f"{b} (ms)" for b in backends] + [f"{b} speed-up" for b in natives]
    reran = [f"- {len(r.get('benchmarks', []))} benchmarks rerun at {r.get('datetime', '?')}" for r in reruns]
    lines = ["# a2mamba-ops benchmark", "", *_machine_lines(report), *reran, ""]
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
    parser.add_argument("json", type=Path, nargs="+", help="pytest-benchmark --benchmark-json output(s)")
    parser.add_argument("-o", "--output", type=Path, help="markdown file to write (default: stdout)")
    parser.add_argument("--stat", default="min", choices=("min", "median", "mean"), help="statistic per benchmark")
    parser.add_argument("--target", type=float, default=5.0, help="forward_backward speed-up to flag (0: none)")
    args = parser.parse_args(argv)
    first, *more = (json.loads(path.read_text()) for path in args.json)
    text = render(first, args.stat, args.target or None, tuple(more))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
