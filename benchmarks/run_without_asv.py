"""Run the asv suites where asv is not installed (the GPU machine), and merge the result.

    python benchmarks/run_without_asv.py run --out $OUT/asv-gpu.json [--bench 'ops|models'] [--commit HASH]
    python benchmarks/run_without_asv.py merge $OUT/asv-gpu.json        # later, where asv is installed

`run` imports the benchmark modules as asv would, and for every
`time_`/`peakmem_`/`track_` benchmark and parameter combination runs
`setup_cache` (once per class), `setup` (NotImplementedError = skip, as in asv),
the benchmark and `teardown`. Times are the median of a few one-call samples;
peak memory is the process's resident high-water mark while the call runs,
reset before it (Linux); track values are returned as they are. Everything runs
in this one process, so a CUDA context and its caches are shared (asv would
use a fresh process per benchmark).

The output has asv's result-file layout (version 2). The benchmark code
versions are left empty: asv computes them with its own runner, which is not
here. `merge` fills them from `benchmarks/results/asv/benchmarks.json` (written
by any local `asv run` of the same benchmark code) and writes the file into
`benchmarks/results/asv/<machine>/` with a machine.json, where `asv publish`
picks it up next to the CPU history.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import itertools
import json
import math
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "asv"
SUITES = ("ops", "models", "accuracy")
PREFIXES = ("time_", "peakmem_", "track_")
RESULT_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_q_25", "stats_q_75", "samples"]


# ----------------------------------------------------------------------------------------- discovery


class Bench:
    """One benchmark function: `suite.Class.method` with its class's params."""

    def __init__(self, name: str, owner: type | None, func_name: str, module):
        self.name, self.owner, self.func_name, self.module = name, owner, func_name, module
        source = owner if owner is not None else module
        params = getattr(owner, "params", []) if owner is not None else []
        if params and not isinstance(params[0], (list, tuple)):
            params = [params]  # asv accepts a flat list for a single parameter
        self.params = [list(p) for p in params]
        self.param_names = list(getattr(source, "param_names", [f"param{i + 1}" for i in range(len(self.params))]))
        self.repeat = getattr(source, "repeat", (2, 5, 10.0))
        self.unit = getattr(getattr(source, func_name), "unit", None)

    @property
    def kind(self) -> str:
        return self.func_name.split("_", 1)[0]


def discover(suites: tuple[str, ...], pattern: str | None) -> list[Bench]:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # import the suites as the package `benchmarks`, as asv does
    regex = re.compile(pattern) if pattern else None
    found = []
    for suite in suites:
        module = importlib.import_module(f"benchmarks.{suite}")
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not attr.startswith("_"):
                for func_name in dir(obj):
                    if func_name.startswith(PREFIXES) and callable(getattr(obj, func_name)):
                        found.append(Bench(f"{suite}.{attr}.{func_name}", obj, func_name, module))
            elif inspect.isfunction(obj) and attr.startswith(PREFIXES) and obj.__module__ == module.__name__:
                found.append(Bench(f"{suite}.{attr}", None, attr, module))
    return [b for b in found if regex is None or regex.search(b.name)]


# ----------------------------------------------------------------------------------------- measuring


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset the VmHWM high-water mark to the current RSS
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _measure(bench: Bench, func, args: tuple) -> tuple[float, list[float]]:
    def call():
        return func(*args)

    if bench.kind == "track":
        value = call()
        return (math.nan if value is None else float(value)), []
    if bench.kind == "peakmem":
        if not _reset_peak_rss():
            raise NotImplementedError("peak memory needs Linux's /proc/self/clear_refs")
        call()
        return float(_peak_rss_bytes()), []
    min_samples, max_samples, budget = bench.repeat if isinstance(bench.repeat, tuple) else (bench.repeat,) * 2 + (1e9,)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_samples and (len(samples) < min_samples or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], samples


def run_bench(bench: Bench, cache: dict, log, only: re.Pattern | None = None) -> list:
    """Every parameter combination of one benchmark, as asv's result columns.

    `only`: run just the combinations whose values (joined with ", ") it matches; the rest are
    recorded as skipped. On the GPU machine `cuda` keeps its lent minutes for the GPU figures.
    """
    combos = list(itertools.product(*bench.params)) if bench.params else [()]
    results, q25, q75, samples_out = [], [], [], []
    started = time.time()
    for combo in combos:
        value, samples, ok = math.nan, [], True
        label = f"{bench.name}({', '.join(map(repr, combo))})"
        if only is not None and combo and not only.search(", ".join(map(str, combo))):
            results.append(math.nan)
            q25.append(None), q75.append(None), samples_out.append(None)
            continue
        instance = bench.owner() if bench.owner is not None else None
        args: tuple = tuple(combo)
        try:
            if instance is not None and hasattr(instance, "setup_cache"):
                if bench.owner not in cache:
                    try:
                        cache[bench.owner] = instance.setup_cache()
                    except Exception as exc:  # remembered, so the class's other benchmarks do not redo it
                        cache[bench.owner] = exc
                if isinstance(cache[bench.owner], Exception):
                    raise cache[bench.owner]
                args = (cache[bench.owner],) + args  # as asv: setup_cache's value comes first
            if instance is not None and hasattr(instance, "setup"):
                instance.setup(*args)
            func = getattr(instance if instance is not None else bench.module, bench.func_name)
            value, samples = _measure(bench, func, args)
            log(f"{label}: {value:.6g}")
        except NotImplementedError as exc:
            log(f"{label}: skipped ({exc})")
        except Exception:  # one failure must not lose the rest of a GPU session's results
            ok = False
            log(f"{label}: FAILED\n{traceback.format_exc()}")
        finally:
            if instance is not None and hasattr(instance, "teardown"):
                try:
                    instance.teardown(*args)
                except Exception:
                    log(f"{label}: teardown failed\n{traceback.format_exc()}")
        ordered = sorted(samples)
        results.append(value if ok else None)  # as asv: NaN = skipped (n/a), null = failed
        q25.append(ordered[len(ordered) // 4] if ordered else None)
        q75.append(ordered[(3 * len(ordered)) // 4] if ordered else None)
        samples_out.append(samples or None)
    params = [[repr(v) for v in values] for values in bench.params]
    return [results, params, None, int(started * 1000), time.time() - started, q25, q75, samples_out]


# ----------------------------------------------------------------------------------------- files


def machine_params(machine: str) -> dict:
    from benchmarks import machine as machine_info  # importable once discover() put the repo on sys.path

    info = machine_info.describe()
    params = {
        "arch": platform.machine(),
        "cpu": info["cpu_model"] + (f" + {info['gpu']}" if info.get("gpu") else ""),
        "machine": machine,
        "num_cpu": str(info["cpu_cores"]),
        "os": f"{platform.system()} {platform.release()}",
        "ram": str(int((info["memory_gib"] or 0) * 2**30)),
    }
    return params


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "0" * 40


def command_run(args) -> int:
    import torch

    commit = args.commit or git_commit()
    machine = args.machine or (
        "gpu-" + re.sub(r"\W+", "-", torch.cuda.get_device_name(0)).strip("-").lower()
        if torch.cuda.is_available()
        else platform.node()
    )
    benches = discover(tuple(args.suites.split(",")), args.bench)
    only = re.compile(args.params) if args.params else None
    print(f"{len(benches)} benchmarks on {machine}, commit {commit[:10]}", flush=True)
    cache: dict = {}
    results, durations = {}, {}
    for bench in benches:
        results[bench.name] = run_bench(bench, cache, lambda text: print(text, flush=True), only)
        durations[bench.name] = results[bench.name][4]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    params = machine_params(machine)
    document = {
        "commit_hash": commit,
        "env_name": f"existing-py{python}-no-asv",
        "date": int(time.time() * 1000),
        "params": dict(params, python=python, torch=torch.__version__),
        "python": python,
        "requirements": {"torch": torch.__version__},
        "env_vars": {},
        "result_columns": RESULT_COLUMNS,
        "results": results,
        "durations": durations,
        "version": 2,
        "units": {b.name: b.unit for b in benches if b.unit},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))  # NaN included, as in asv's own result files
    values = [r for b in results.values() for r in b[0]]
    failed = sum(r is None for r in values)
    skipped = sum(r is not None and math.isnan(r) for r in values)
    print(f"wrote {out}: {len(results)} benchmarks, {len(values)} values, {skipped} skipped, {failed} failed")
    return 1 if failed else 0


def command_merge(args) -> int:
    document = json.loads(Path(args.json).read_text())
    index_path = RESULTS_DIR / "benchmarks.json"
    if not index_path.is_file():
        raise SystemExit(f"{index_path} is missing: run `asv run --python=same ...` once on this benchmark code first")
    index = json.loads(index_path.read_text())
    kept = {}
    for name, row in document["results"].items():
        if name not in index:
            print(f"dropping {name}: not in {index_path.name} (benchmark code changed?)")
            continue
        row[2] = index[name]["version"]
        kept[name] = row
    document["results"] = kept
    document.pop("units", None)
    if args.commit:  # the GPU machine may have run without git history
        document["commit_hash"] = args.commit
    if set(document["commit_hash"]) == {"0"}:
        raise SystemExit("the run recorded no commit (no git there): pass --commit HASH")
    machine = args.machine or document["params"]["machine"]
    document["params"]["machine"] = machine
    folder = RESULTS_DIR / machine
    folder.mkdir(parents=True, exist_ok=True)
    machine_json = {k: document["params"][k] for k in ("arch", "cpu", "machine", "num_cpu", "os", "ram")}
    (folder / "machine.json").write_text(json.dumps(dict(machine_json, version=1), indent=4) + "\n")
    target = folder / f"{document['commit_hash'][:8]}-{document['env_name']}.json"
    target.write_text(json.dumps(document, indent=1))
    print(f"wrote {target} ({len(kept)} benchmarks)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="asv suites without asv: run, or merge a run into the asv results")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the suites in this process and write asv-like JSON")
    run.add_argument("--out", required=True, help="JSON file to write")
    run.add_argument("--bench", help="regular expression on benchmark names, as asv's --bench")
    run.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated modules (default {','.join(SUITES)})")
    run.add_argument("--params", help="regular expression: run only parameter sets it matches (e.g. cuda)")
    run.add_argument("--commit", help="commit hash to record (default: git rev-parse HEAD)")
    run.add_argument("--machine", help="machine name to record (default: gpu-<card> or the host name)")
    merge = sub.add_parser("merge", help="copy a `run` JSON into benchmarks/results/asv/<machine>/")
    merge.add_argument("json", help="output of `run`")
    merge.add_argument("--machine", help="machine name (default: the one recorded)")
    merge.add_argument("--commit", help="commit the run measured (default: the one recorded)")
    args = parser.parse_args(argv)
    return command_run(args) if args.command == "run" else command_merge(args)


if __name__ == "__main__":
    raise SystemExit(main())
