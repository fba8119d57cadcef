"""asv results that line up across machines: a full machine record, and stable environment names.

    python -m benchmarks.tools.asv_results machine cpu-2core
    python -m benchmarks.tools.asv_results rename benchmarks/results/asv [--python 3.11]

`machine` records this machine in asv's machine file (`~/.asv-machine.json`)
under a stable name with its CPU model, core count, memory and OS. `asv
machine --yes --machine NAME` records the name and only those fields that
differ from its defaults, i.e. nothing else, so results of an Intel and an AMD
machine could not be told apart.

`rename`: `asv run --python=same` names the environment after the interpreter's path
(`existing-py_home_me_venv_bin_python-...`) and records that path in the
result file: a name that differs on every machine and leaks a local folder
into the repository. This rewrites every such file under the results folder
to `existing-py<X.Y>-...`, the Python version in place of the path, in its
name and its contents. Files already stable are left alone. `nox -s asv` runs
it after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from benchmarks.cases import machine

PREFIX = "existing-py"


def stable_env_name(env_name: str, interpreter: str, python: str) -> str:
    """`existing-py_work_venv_bin_python3-A2MAMBA_CUDAOFF` -> `existing-py3.11-A2MAMBA_CUDAOFF`."""
    local = PREFIX + interpreter.replace("/", "_")
    if not env_name.startswith(local):
        raise ValueError(f"environment {env_name!r} is not named after its interpreter {interpreter!r}")
    return PREFIX + python + env_name[len(local) :]


def normalize(results_dir: Path, python: str) -> list[Path]:
    """Rewrite the result files named after an interpreter path; returns the files written."""
    written = []
    for path in sorted(results_dir.glob(f"*/*-{PREFIX}_*.json")):
        document = json.loads(path.read_text())
        interpreter = document.get("python", "")
        if "/" not in interpreter:
            continue
        env_name = stable_env_name(document["env_name"], interpreter, python)
        document["env_name"] = env_name
        document["python"] = python
        document.get("params", {})["python"] = python
        target = path.with_name(f"{document['commit_hash'][:8]}-{env_name}.json")
        if target.exists() and target != path:
            raise FileExistsError(f"{target} exists already: remove one of the two runs of that commit first")
        target.write_text(json.dumps(document, indent=1) + "\n")
        if target != path:
            path.unlink()
        written.append(target)
    return written


ASV_MACHINE_FILE = Path.home() / ".asv-machine.json"


def record_machine(name: str, path: Path = ASV_MACHINE_FILE) -> dict:
    """Describe this machine under `name` in asv's machine file (other machines' entries kept)."""
    ram = machine.memory_bytes()
    entry = {
        "arch": platform.machine(),
        "cpu": machine.cpu_model(),
        "machine": name,
        "num_cpu": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "ram": str(ram or ""),  # bytes, as asv records it
    }
    document = json.loads(path.read_text()) if path.is_file() else {}
    document.update({name: entry, "version": 1})
    path.write_text(json.dumps(document, indent=4) + "\n")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.asv_results", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("machine", help="record this machine for asv under a stable name")
    record.add_argument("name", help="the machine name results are filed under (e.g. cpu-2core)")
    rename = sub.add_parser("rename", help="rename results named after an interpreter path")
    rename.add_argument("results", type=Path, help="asv's results folder (benchmarks/results/asv)")
    default = f"{sys.version_info.major}.{sys.version_info.minor}"
    rename.add_argument("--python", default=default, help=f"Python version the runs used (default {default})")
    args = parser.parse_args(argv)
    if args.command == "machine":
        print(f"{ASV_MACHINE_FILE}: {record_machine(args.name)}")
        return 0
    if not args.results.is_dir():
        parser.error(f"results must be a folder, got {args.results}")
    try:
        written = normalize(args.results, args.python)
    except (ValueError, FileExistsError) as exc:
        print(f"asv_results: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
