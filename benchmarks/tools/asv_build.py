"""Build and install the monorepo's packages for one asv per-commit environment.

asv builds one project from one directory; this repository holds three
packages under `packages/`, and older commits hold fewer. asv runs this script
(from the current checkout, through `{conf_dir}`) with the environment's
Python:

    asv_build.py build --source <commit checkout> --wheels <cache>/wheels
    asv_build.py install --wheels <cache>/wheels

The wheels go into a subfolder because asv refuses a build cache folder that
holds more than one wheel. Builds run without isolation against the
environment's torch (installing torch per build would take minutes and GBs),
so the environment's requirements in asv.conf.json list the build tools.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# In dependency order: models need the ops, train needs the models.
PACKAGES = ("a2mamba-ops", "a2mamba-models", "a2mamba-train")


def present_packages(source: Path) -> list[Path]:
    """The packages this commit has (a pyproject.toml in packages/<name>/)."""
    folders = [source / "packages" / name for name in PACKAGES]
    return [folder for folder in folders if (folder / "pyproject.toml").is_file()]


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(source: Path, wheels: Path) -> None:
    packages = present_packages(source)
    if not packages:
        raise SystemExit(f"no package with a pyproject.toml under {source / 'packages'}")
    wheels.mkdir(parents=True, exist_ok=True)
    for package in packages:
        pip("wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", str(wheels), str(package))


def install(wheels: Path) -> None:
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"no wheel in {wheels}: did the build step run?")
    pip("install", "--no-deps", "--force-reinstall", *found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build/install the a2mamba packages for asv")
    sub = parser.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build", help="build a wheel of each package present at this commit")
    b.add_argument("--source", type=Path, required=True, help="the commit's checkout (asv's {build_dir})")
    b.add_argument("--wheels", type=Path, required=True, help="folder for the wheels")
    i = sub.add_parser("install", help="install the built wheels into the running Python")
    i.add_argument("--wheels", type=Path, required=True, help="folder holding the wheels")
    args = parser.parse_args(argv)
    if args.step == "build":
        build(args.source, args.wheels)
    else:
        install(args.wheels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
