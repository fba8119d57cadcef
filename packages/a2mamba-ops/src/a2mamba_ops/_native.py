"""Loading the compiled extension, if it was built, and telling a broken install from a CPU-only one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch  # noqa: F401  (the extension links against torch's libraries)

try:
    from . import _C  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # a source checkout without a build, or a broken build
    _C = None
    # With no library file at all Python's message blames a circular import; say what is wrong.
    _here = Path(__file__).parent
    _libraries = [p.name for p in _here.glob("_C.*") if p.suffix in (".so", ".pyd")]
    IMPORT_ERROR = str(exc) if _libraries else f"no compiled library (_C.*.so) in {_here}"

# Written by the CMake build next to _C: which backends it compiled.
MANIFEST = Path(__file__).with_name("_build_manifest.json")
# Test suites fail when the native CPU backend is missing, unless this is set to 1 (pure-Python checkouts).
ALLOW_MISSING_ENV = "A2MAMBA_ALLOW_MISSING_NATIVE"


def build_info() -> dict:
    if _C is None:
        return {"torch_version": None, "cuda": False, "cuda_archs": "", "compiler": None}
    return dict(_C.build_info())


def has_cpu_kernels() -> bool:
    return _C is not None and hasattr(_C, "cpu")


def has_cuda_kernels() -> bool:
    return _C is not None and hasattr(_C, "cuda")


def built_backends() -> list[str]:
    """The native backends the build compiled ([] for a checkout that was never built)."""
    try:
        return list(json.loads(MANIFEST.read_text())["backends"])
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        return [f"<unreadable build manifest {MANIFEST}: {exc}>"]


def check_build() -> list[str]:
    """Why a backend that the build compiled cannot run here; [] when the install is sound.

    A CUDA backend without a visible device is sound (it is a property of the machine, not of the
    install); a CUDA backend missing from the library that was built with it is not.
    """
    problems = []
    loaded = {"cpu": has_cpu_kernels(), "cuda": has_cuda_kernels()}
    for name in built_backends():
        if name not in loaded:
            problems.append(name)
        elif not loaded[name]:
            why = f"a2mamba_ops._C failed to import: {IMPORT_ERROR}" if _C is None else f"_C has no {name!r} module"
            problems.append(f"the {name} backend was built but does not load ({why}); reinstall a2mamba-ops")
    return problems


def missing_native_allowed() -> bool:
    return os.environ.get(ALLOW_MISSING_ENV) == "1"
