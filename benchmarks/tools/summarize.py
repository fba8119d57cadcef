"""pytest-benchmark JSON of the ops -> markdown table: median time per backend and speed-ups.

    python -m benchmarks.tools.summarize benchmarks/results/ops-cpu-2core.json -o benchmarks/results/ops-cpu-2core.md

One run, one table: every row comes from the one JSON file given, and every
backend must have run the same number of rounds. Times are reduced from the
raw rounds (pytest's `--benchmark-save-data`) by `benchmarks.cases.timing`:
the median with its quartiles and extremes. Speed-up = the reference's median
/ the backend's median. `--target` marks forward_backward rows whose speed-up
falls short of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.cases.timing import Timing

NATIVE = ("cpu", "cuda", "natten")
BACKEND_ORDER = ("reference", "cpu", "cuda", "natten")


def load_rows(report: dict) -> dict[tuple[str, str, str, str], dict[str, Timing]]:
    """{(op, shape, mode, device): {backend: Timing}} from a pytest-benchmark report."""
    rows: dict[tuple[str, str, str, str], dict[str, Timing]] = {}
    for bench in report.get("benchmarks", []):
        info = bench.get("extra_info", {})
        try:
            key = (info["op"], info["shape"], info["mode"], info["device"])
            backend = info["backend"]
        except KeyError as exc:
            raise ValueError(f"benchmark {bench.get('name')!r} lacks {exc} (not from pytest_bench?)") from None
        samples = bench.get("stats", {}).get("data")
        if not samples:
            raise ValueError(f"benchmark {bench.get('name')!r} has no rounds: run pytest with --benchmark-save-data")
        rows.setdefault(key, {})[backend] = Timing.of(samples)
    rounds = {t.rounds for times in rows.values() for t in times.values()}
    if len(rounds) > 1:
        raise ValueError(f"the benchmarks ran different numbers of rounds {sorted(rounds)}: rerun them all at once")
    return rows


def _ms(t: Timing | None) -> str:
    if t is None:
        return "—"
    return f"{t.median * 1e3:.2f} ({t.q1 * 1e3:.2f}–{t.q3 * 1e3:.2f})"


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


def render(report: dict, target: float | None = None) -> str:
    rows = load_rows(report)
    rounds = next((t.rounds for times in rows.values() for t in times.values()), 0)
    backends = [b for b in BACKEND_ORDER if any(b in times for times in rows.values())]
    natives = [b for b in backends if b in NATIVE]
    header = ["op", "shape", "mode", "device"] + [f"{b} ms" for b in backends] + [f"{b} speed-up" for b in natives]
    lines = ["# a2mamba-ops benchmark", "", *_machine_lines(report), ""]
    lines.append(
        f"One run; every backend {rounds} round{'s' * (rounds != 1)} of one call after a warm-up call. Times: median "
        "(quartiles) in ms; speed-up = reference median / backend median."
    )
    if target is not None:
        lines.append(f"Rows marked `<` miss the {target:g}x target for forward_backward.")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shortfalls = 0
    for (op, shape, mode, device), times in rows.items():
        cells = [op, shape, mode, device] + [_ms(times.get(b)) for b in backends]
        for b in natives:
            if "reference" in times and b in times:
                ratio = times["reference"].median / times[b].median
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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output (with --benchmark-save-data)")
    parser.add_argument("-o", "--output", type=Path, help="markdown file to write (default: stdout)")
    parser.add_argument("--target", type=float, default=5.0, help="forward_backward speed-up to flag (0: none)")
    args = parser.parse_args(argv)
    try:
        text = render(json.loads(args.json.read_text()), args.target or None)
    except (OSError, ValueError) as exc:
        print(f"summarize: {args.json}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
