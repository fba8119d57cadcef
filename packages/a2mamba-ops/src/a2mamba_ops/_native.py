"""Loading the compiled extension, if it was built, and choosing its CPU kernel variant."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch  # noqa: F401  (the extension links against torch's libraries)

try:
    from . import _C  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # a source checkout without a build, or a broken build
    _C = None
    IMPORT_ERROR = str(exc)

# Like ATen's ATEN_CPU_CAPABILITY: names the CPU kernel variant to run instead of the best one.
CPU_CAPABILITY_ENV = "A2MAMBA_CPU_CAPABILITY"
# Why the current variant runs: "best supported" or "forced by A2MAMBA_CPU_CAPABILITY".
cpu_capability_reason = "best supported"


def build_info() -> dict:
    if _C is None:
        return {"torch_version": None, "cuda": False, "cuda_archs": "", "compiler": None}
    return dict(_C.build_info())


def has_cpu_kernels() -> bool:
    return _C is not None and hasattr(_C, "cpu")


def has_cuda_kernels() -> bool:
    return _C is not None and hasattr(_C, "cuda")


def cpu_capability() -> str | None:
    """The instruction-set variant the CPU kernels run: 'default', 'avx2' or 'avx512' (None without kernels)."""
    return _C.cpu.current_capability() if has_cpu_kernels() else None


def compiled_cpu_capabilities() -> list[str]:
    """Variants of the CPU kernels in this build, from the least to the most demanding."""
    return list(_C.cpu.compiled_capabilities()) if has_cpu_kernels() else []


def supported_cpu_capabilities() -> list[str]:
    """Those of the compiled variants that this CPU can run."""
    return list(_C.cpu.supported_capabilities()) if has_cpu_kernels() else []


def set_cpu_capability(name: str) -> None:
    """Run the CPU kernels of variant `name` from now on (process-wide). ValueError if the CPU can't."""
    if not has_cpu_kernels():
        raise RuntimeError("a2mamba-ops was built without CPU kernels")
    if not isinstance(name, str):
        raise TypeError(f"CPU capability must be a str, got {type(name).__name__}")
    _C.cpu.set_capability(name)


@contextlib.contextmanager
def forced_cpu_capability(name: str) -> Iterator[None]:
    """Run the CPU kernels of variant `name` inside the block (for tests and benchmarks)."""
    previous = cpu_capability()
    set_cpu_capability(name)
    try:
        yield
    finally:
        set_cpu_capability(previous)


def _apply_environment() -> None:
    global cpu_capability_reason
    requested = os.environ.get(CPU_CAPABILITY_ENV, "").strip().lower()
    if not requested or not has_cpu_kernels():
        return
    try:
        set_cpu_capability(requested)
    except ValueError as exc:
        # As ATen does with ATEN_CPU_CAPABILITY: a value this machine cannot honour must not
        # stop the import; the best supported variant runs instead.
        warnings.warn(
            f"{CPU_CAPABILITY_ENV}={requested!r} ignored: {exc}; running {cpu_capability()!r}",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    cpu_capability_reason = f"forced by {CPU_CAPABILITY_ENV}"


_apply_environment()
