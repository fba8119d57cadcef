"""What a benchmark figure was measured on: CPU, cores, memory, torch, GPU.

Recorded next to every result (pytest-benchmark JSON, the reports' JSON, the
markdown summaries) because a speed figure means nothing without it.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


LABEL_VARIABLE = "A2MAMBA_BENCH_MACHINE"


def label() -> str:
    """The name result files carry: `A2MAMBA_BENCH_MACHINE`, else `cpu-<N>core`. Never the host
    name: results from machines of one kind line up, and no local name lands in the repository."""
    text = os.environ.get(LABEL_VARIABLE) or f"cpu-{os.cpu_count()}core"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise ValueError(f"{LABEL_VARIABLE} must be letters, digits, '.', '_' or '-', got {text!r}")
    return text


def label_or_usage_error(parser) -> str:
    """`label()` for a tool's command line: a bad `A2MAMBA_BENCH_MACHINE` is a usage error (exit 2)."""
    try:
        return label()
    except ValueError as exc:
        parser.error(str(exc))


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_gib() -> float | None:
    total = memory_bytes()
    return None if total is None else round(total / 2**30, 1)


def commit() -> str | None:
    """The repository's commit (10 hex digits, `+` when the tree has uncommitted changes), None outside git."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")  # earlier results lying around do not count
    except (OSError, subprocess.CalledProcessError):
        return None
    return head[:10] + ("+" if dirty else "")


# Environment variables that change how fast the same code runs: OpenMP's threads and the C
# library's allocator (when it hands memory back to the system, every fresh buffer page-faults).
SETTINGS_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "A2MAMBA_CPU_")


def settings() -> dict[str, str]:
    """The performance-relevant environment variables that are set, by name."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS_PREFIXES)}


def describe() -> dict:
    """A flat, JSON-ready description of this machine and software stack."""
    import torch

    info = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "settings": settings(),
    }
    try:
        import a2mamba_ops

        info["a2mamba_ops"] = a2mamba_ops.__version__
        info["backends"] = a2mamba_ops.available_backends()
        # Which instruction-set variant of the CPU kernels ran (the CPU model name alone does not say).
        capability = getattr(a2mamba_ops, "cpu_capability", None)
        info["cpu_kernels"] = capability() if capability is not None and "cpu" in info["backends"] else None
    except ImportError:
        info["a2mamba_ops"] = None
    return info


def one_line(info: dict) -> str:
    """`Intel Xeon ..., 2 cores (2 threads), 23.4 GiB, torch 2.x, Python 3.11` (+ GPU)."""
    text = (
        f"{info.get('cpu_model')}, {info.get('cpu_cores')} cores ({info.get('torch_threads')} torch threads), "
        f"{info.get('memory_gib')} GiB, torch {info.get('torch')}, Python {info.get('python')}"
    )
    if info.get("cpu_kernels"):
        text += f", CPU kernels {info['cpu_kernels']}"
    if info.get("gpu"):
        text += f", GPU {info['gpu']}"
    if info.get("settings"):
        text += ", environment " + " ".join(f"{k}={v}" for k, v in info["settings"].items())
    return text
