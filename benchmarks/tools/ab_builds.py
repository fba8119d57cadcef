"""Two or more builds of the ops timed alternately: neighbourhood attention against the matmul rate.

    python -m benchmarks.tools.ab_builds --build before=e8581d4 --build after=HEAD \\
        --out benchmarks/results --name attention-forward [--processes 6] [--rounds 11] \\
        [--modes forward,forward_backward] [--env after:MALLOC_TRIM_THRESHOLD_=4294967296]

A build is `NAME=REV` (a git revision: its ops package is built, CPU kernels only, into a cache
folder) or `NAME=DIR` (a folder an ops package is installed in, as `pip install --target DIR`
leaves it); `--env NAME:KEY=VALUE` sets a variable in that build's processes only, so one
revision under two names compares two settings. Every measurement is a fresh worker process
that imports one build and times the attention cases of the CPU targets (`--modes`: forward,
`na2d_qk_softmax` + `na2d_av`, and/or forward_backward, at the three local-stage shapes) side by
side with the fp32 matmul, rounds interleaved, as `cpu_targets` does; its figure
per case is the ratio of the two rates, which keeps a machine's load out of the comparison as far
as a ratio can. Processes alternate between the builds (ABAB, then BABA), so a burst of load
hits both, and a build's figure is the median over its processes.

Writes ab-<name>-<machine>.json and .md to --out; `--tiny` runs toy sizes (a check of the tool,
not a figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cases import machine
from benchmarks.tools.report_files import write_report

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "packages" / "a2mamba-ops"
CACHE = Path(tempfile.gettempdir()) / "a2mamba-ab-builds"


@dataclass(frozen=True)
class Build:
    name: str
    spec: str  # as given: a revision or a folder
    site: Path  # the folder holding a2mamba_ops
    commit: str | None
    env: tuple[tuple[str, str], ...] = ()  # set in its worker processes (an allocator or thread setting)


def parse_build(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise ValueError(f"--build must be NAME=REV or NAME=DIR, got {text!r}")
    return name, spec


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def prepare(name: str, spec: str, cache: Path) -> Build:
    """The build's folder: `spec` itself when it holds an ops package, else the revision built into `cache`."""
    folder = Path(spec)
    if (folder / "a2mamba_ops").is_dir():
        return Build(name, spec, folder.resolve(), None)
    try:
        commit = git("rev-parse", "--verify", f"{spec}^{{commit}}")
    except subprocess.CalledProcessError:
        problem = f"{spec!r} is neither a folder holding a2mamba_ops nor a git revision"
        raise ValueError(f"build {name!r}: {problem}") from None
    site = cache / commit
    if not (site / "a2mamba_ops").is_dir():
        with tempfile.TemporaryDirectory() as tree:
            git("worktree", "add", "--detach", tree, commit)
            try:
                print(f"building {name} ({commit[:10]}) ...", flush=True)
                env = {**os.environ, "A2MAMBA_CUDA": "OFF"}
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--no-deps",
                        "--no-build-isolation",
                        "--target",
                        str(site),
                        str(Path(tree) / OPS.relative_to(ROOT)),
                    ],
                    check=True,
                    env=env,
                )
            finally:
                git("worktree", "remove", "--force", tree)
    return Build(name, spec, site, commit)


def parse_env(text: str) -> tuple[str, str, str]:
    name, sep, setting = text.partition(":")
    key, eq, value = setting.partition("=")
    if not sep or not name or not eq or not key:
        raise ValueError(f"--env must be NAME:KEY=VALUE, got {text!r}")
    return name, key, value


def worker(rounds: int, modes: list[str], tiny: bool) -> dict:
    """Each attention case's GFLOP/s over the matmul's, their rounds interleaved in this process."""
    import torch

    import a2mamba_ops
    from a2mamba_ops import _native
    from benchmarks.cases import targets
    from benchmarks.cases.shapes import TARGET_NA2D
    from benchmarks.cases.timing import measure_side_by_side

    torch.set_num_threads(1 if tiny else targets.THREADS)
    contenders = {"matmul": targets.matmul(64 if tiny else targets.MATMUL_N)}
    for shape in TARGET_NA2D:
        case = targets.with_batch(shape, 1 if tiny else 8)
        for mode in modes:
            name = shape.name if mode == "forward" else f"{shape.name} {mode}"
            contenders[name] = targets.attention(case, mode, "cpu")
    timings = measure_side_by_side({name: c.run for name, c in contenders.items()}, rounds)
    rate = {name: c.rate(timings[name]) for name, c in contenders.items()}
    return {
        "ops_file": a2mamba_ops.__file__,
        "cpu_kernels": _native.cpu_capability() if _native.has_cpu_kernels() else None,
        "matmul_gflops": rate["matmul"],
        "ratios": {name: rate[name] / rate["matmul"] for name in contenders if name != "matmul"},
    }


def run_worker(build: Build, rounds: int, modes: list[str], tiny: bool) -> dict:
    env = {**os.environ, **dict(build.env), "PYTHONPATH": os.pathsep.join([str(build.site), str(ROOT)])}
    command = [sys.executable, "-m", "benchmarks.tools.ab_builds", "--worker", "--rounds", str(rounds)]
    command += ["--modes", ",".join(modes)]
    done = subprocess.run(command + (["--tiny"] if tiny else []), cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker for build {build.name!r} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["ops_file"]).resolve().is_relative_to(build.site):
        imported = result["ops_file"]
        raise RuntimeError(f"build {build.name!r}: the worker imported {imported}, not the build in {build.site}")
    return result


def measure(builds: list[Build], processes: int, rounds: int, modes: list[str], tiny: bool) -> list[dict]:
    """Per process, in the order run: the build's name and its worker's figures."""
    lines = []
    for p in range(processes):
        for build in builds if p % 2 == 0 else builds[::-1]:
            lines.append({"build": build.name, **run_worker(build, rounds, modes, tiny)})
        print(f"process round {p + 1}/{processes} done", flush=True)
    return lines


def medians(lines: list[dict], build: str) -> dict:
    mine = [line for line in lines if line["build"] == build]
    cases = mine[0]["ratios"].keys()
    return {
        "matmul_gflops": statistics.median(line["matmul_gflops"] for line in mine),
        "ratios": {case: statistics.median(line["ratios"][case] for line in mine) for case in cases},
    }


def markdown(report: dict) -> str:
    cases = list(report["medians"][report["builds"][0]["name"]]["ratios"])
    lines = [
        f"# A/B of builds: {report['name']}, {report['label']}",
        "",
        f"- {machine.one_line(report['machine'])}; tool run at commit {report['commit'] or 'unknown'}",
        *(
            f"- `{b['name']}`: {b['spec']}"
            + (f" (commit {b['commit'][:10]})" if b["commit"] else "")
            + ("; environment " + " ".join(f"`{k}={v}`" for k, v in b.get("env", {}).items()) if b.get("env") else "")
            for b in report["builds"]
        ),
        f"- {report['processes']} fresh processes per build, alternating (ABAB, then BABA); in each, "
        f"{report['rounds']} rounds of the fp32 matmul and of the attention "
        f"({', '.join(report.get('modes', ['forward']))}; forward is `na2d_qk_softmax` + `na2d_av`; "
        f"batch {report['batch']}) interleaved; "
        "a figure is the attention's GFLOP/s over the same process's matmul GFLOP/s",
        "",
        "## Medians over the processes",
        "",
        "| build | matmul GFLOP/s | " + " | ".join(cases) + " |",
        "|---|---:|" + "---:|" * len(cases),
    ]
    for build in report["builds"]:
        m = report["medians"][build["name"]]
        lines.append(
            f"| {build['name']} | {m['matmul_gflops']:.0f} | "
            + " | ".join(f"{m['ratios'][c]:.3f}" for c in cases)
            + " |"
        )
    lines += ["", "## Every process, in the order run", "", "| build | matmul GFLOP/s | " + " | ".join(cases) + " |"]
    lines.append("|---|---:|" + "---:|" * len(cases))
    for line in report["lines"]:
        lines.append(
            f"| {line['build']} | {line['matmul_gflops']:.0f} | "
            + " | ".join(f"{line['ratios'][c]:.3f}" for c in cases)
            + " |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.ab_builds", description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", default=[], help="NAME=REV or NAME=DIR (two or more)")
    parser.add_argument("--out", type=Path, help="folder for ab-<name>-<machine>.json/.md")
    parser.add_argument("--name", help="what the comparison is about, in the file name (letters, digits, '-')")
    parser.add_argument("--processes", type=int, default=6, help="worker processes per build (default 6)")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds in each process (default 11)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where revisions are built (default {CACHE})")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the tool, measures nothing")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME:KEY=VALUE, set for build NAME's processes (repeatable)"
    )
    parser.add_argument(
        "--modes",
        default="forward",
        help="attention modes, comma-separated: forward, forward_backward (default forward)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be positive, got {args.rounds}")
    args.modes = args.modes.split(",")
    from benchmarks.cases.ops import MODES

    if not args.modes or any(m not in MODES for m in args.modes):
        parser.error(f"--modes must be among {', '.join(MODES)}, got {','.join(args.modes)!r}")
    if args.worker:
        return args
    if args.processes < 1:
        parser.error(f"--processes must be positive, got {args.processes}")
    if args.out is None or args.name is None:
        parser.error("--out and --name are required")
    if not args.name.replace("-", "").isalnum():
        parser.error(f"--name must be letters, digits and '-', got {args.name!r}")
    try:
        args.builds = [parse_build(text) for text in args.build]
    except ValueError as error:
        parser.error(str(error))
    if len(args.builds) < 2:
        parser.error("give at least two --build NAME=REV|DIR")
    if len({name for name, _ in args.builds}) != len(args.builds):
        parser.error("build names must differ")
    args.envs = {}
    try:
        for text in args.env:
            name, key, value = parse_env(text)
            args.envs.setdefault(name, {})[key] = value
    except ValueError as error:
        parser.error(str(error))
    unknown = set(args.envs) - {name for name, _ in args.builds}
    if unknown:
        parser.error(f"--env names no build: {', '.join(sorted(unknown))}")
    args.label = machine.label_or_usage_error(parser)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.rounds, args.modes, args.tiny)))
        return 0
    builds = [
        dataclasses.replace(prepare(name, spec, args.cache), env=tuple(args.envs.get(name, {}).items()))
        for name, spec in args.builds
    ]
    lines = measure(builds, args.processes, args.rounds, args.modes, args.tiny)
    report = {
        "name": args.name,
        "label": args.label,
        "commit": machine.commit(),
        "machine": machine.describe(),
        "processes": args.processes,
        "rounds": args.rounds,
        "batch": 1 if args.tiny else 8,
        "modes": args.modes,
        "builds": [{"name": b.name, "spec": b.spec, "commit": b.commit, "env": dict(b.env)} for b in builds],
        "lines": lines,
        "medians": {b.name: medians(lines, b.name) for b in builds},
    }
    for line in report["lines"]:
        line.pop("ops_file")  # a local path: checked above, not worth keeping
    write_report(args.out, f"ab-{args.name}-{args.label}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
