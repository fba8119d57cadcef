"""Loading the compiled extension, if it was built."""

from __future__ import annotations

import torch  # noqa: F401  (the extension links against torch's libraries)

try:
    from . import _C  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # a source checkout without a build, or a broken build
    _C = None
    IMPORT_ERROR = str(exc)


def build_info() -> dict:
    if _C is None:
        return {"torch_version": None, "cuda": False, "cuda_archs": "", "compiler": None}
    return dict(_C.build_info())


def has_cpu_kernels() -> bool:
    return _C is not None and hasattr(_C, "cpu")


def has_cuda_kernels() -> bool:
    return _C is not None and hasattr(_C, "cuda")
