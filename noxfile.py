"""Every workflow of the monorepo is a nox session.

    nox -s demo        the main job: train a2mamba_test on Fashion-MNIST, report test accuracy
    nox -s tests       all packages' tests in one venv (torch pinned)
    nox -s tests_ops   the ops alone, in a venv holding only torch (+ build tools)
    nox -s build_cuda  compile-and-link check of the CUDA kernels (skips without nvcc)
    nox -s bench       pytest-benchmark of the kernels, JSON + table under benchmarks/results/
    nox -s lint        ruff
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
OPS = ROOT / "packages" / "a2mamba-ops"
MODELS = ROOT / "packages" / "a2mamba-models"
TRAIN = ROOT / "packages" / "a2mamba-train"

# CI and the GPU machine pin these; pip on the dev machines takes them from local disk.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
BUILD_TOOLS = ["scikit-build-core>=0.10", "cmake>=3.24", "ninja"]
TEST_TOOLS = ["pytest>=8", "numpy"]

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_ops(session: nox.Session, *, cuda: str = "OFF") -> None:
    """Build and install the ops against the venv's torch (no second torch in a build env)."""
    session.install(*BUILD_TOOLS)
    session.install(
        "--no-build-isolation", "--no-deps", str(OPS), env={"A2MAMBA_CUDA": cuda, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    )


def install_all(session: nox.Session) -> None:
    session.install(*TORCH)
    install_ops(session)
    # Models and train are pure Python; install them with their remaining dependencies.
    session.install(str(MODELS), str(TRAIN), *TEST_TOOLS)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package's tests, in one venv holding all three packages."""
    install_all(session)
    session.run("python", "-m", "a2mamba_ops")
    paths = [str(p / "tests") for p in (OPS, MODELS, TRAIN) if (p / "tests").is_dir()]
    session.run("python", "-m", "pytest", "--import-mode=importlib", "-p", "no:cacheprovider",
                "-ra", *paths, *session.posargs)


@nox.session(python="3.11")
def tests_ops(session: nox.Session) -> None:
    """The ops package alone: proves it installs and works with nothing but torch."""
    session.install(TORCH[0])
    install_ops(session)
    session.install(*TEST_TOOLS)
    session.run("python", "-m", "a2mamba_ops")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-ra", str(OPS / "tests"), *session.posargs)


@nox.session(python="3.11")
def build_cuda(session: nox.Session) -> None:
    """Compile and link every CUDA source for sm_90, warnings as errors. Nothing runs."""
    nvcc = shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))
    if nvcc is None:
        session.skip("nvcc not found: the CUDA kernels cannot be compiled on this machine")
    session.install(TORCH[0])
    session.install(*BUILD_TOOLS)
    with tempfile.TemporaryDirectory() as out:
        session.run(
            "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", out, str(OPS),
            env={
                "A2MAMBA_CUDA": "ON",
                "A2MAMBA_WERROR": "ON",
                "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
                "CUDACXX": nvcc,
                "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
                # A fresh build dir, so this check never reuses a CPU-only configuration.
                "SKBUILD_BUILD_DIR": str(Path(out) / "build"),
            },
        )
        wheels = list(Path(out).glob("*.whl"))
        session.log(f"CUDA build linked: {', '.join(w.name for w in wheels)}")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Kernel benchmarks (pytest-benchmark); results land in benchmarks/results/."""
    session.install(*TORCH)
    install_ops(session)
    session.install("pytest>=8", "pytest-benchmark", "py-cpuinfo")
    machine = platform.node() or "local"
    out = ROOT / "benchmarks" / "results" / f"ops-cpu-{machine}.json"
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", str(ROOT / "benchmarks" / "test_ops_bench.py"),
                f"--benchmark-json={out}", *session.posargs)
    session.run("python", str(ROOT / "benchmarks" / "summarize.py"), str(out))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".", *session.posargs)
