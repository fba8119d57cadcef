"""Which implementation runs: one entry point, several backends (as in NATTEN).

By default the fastest backend that can run tensors on the inputs' device is
chosen; `use_backend(name)` forces one, for tests and benchmarks.

Two kinds of backend exist. *Kernel* backends (`cpu`, `cuda`) run through the
`torch.library` custom ops of `_ops`, which carry the schema, fake kernels and
autograd. *Autograd* backends (`reference`, `natten`) are plain differentiable
PyTorch functions and are called directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from . import _native

# A plain module global rather than a ContextVar: torch.compile traces reads of
# globals (and guards on them) but graph-breaks on ContextVar.get. The override
# is meant for tests and benchmarks, so it is process-wide, not per thread.
_forced: str | None = None
_available: list[str] | None = None

# Preference order per device type: first available wins.
_PREFERENCE = {
    "cuda": ("cuda", "natten", "reference"),
    "cpu": ("cpu", "reference", "natten"),
}
KERNEL_BACKENDS = ("cpu", "cuda")


def _natten_functional():
    """NATTEN's functional module when it still has the unfused na2d_qk/na2d_av (<= 0.17)."""
    try:
        import natten.functional as nf  # type: ignore[import-not-found]
    except Exception:  # not installed, or built for another torch
        return None
    if hasattr(nf, "na2d_qk") and hasattr(nf, "na2d_av"):
        return nf
    return None


def available_backends() -> list[str]:
    """Backends usable in this installation, e.g. ['reference', 'cpu'] (+ 'cuda', 'natten')."""
    global _available
    if _available is None:
        _available = _probe_backends()
    return list(_available)


def _probe_backends() -> list[str]:
    names = ["reference"]
    if _native.has_cpu_kernels():
        names.append("cpu")
    if _native.has_cuda_kernels() and torch.cuda.is_available():
        names.append("cuda")
    if _natten_functional() is not None:
        names.append("natten")
    return names


def _runs_on(backend: str, device_type: str) -> bool:
    if backend in ("reference", "natten"):
        return device_type in ("cpu", "cuda") or backend == "reference"
    return backend == device_type


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force backend `name` for the ops called inside the block."""
    available = available_backends()
    if name not in available:
        raise ValueError(f"backend must be one of {available} in this installation, got {name!r}")
    global _forced
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


def select(device: torch.device, supported: tuple[str, ...] = ("cuda", "cpu", "natten", "reference")) -> str:
    """The backend that runs tensors on `device` now, among those in `supported`.

    An op that a forced backend does not implement (NATTEN has no scan) runs
    on the default choice for the device instead.
    """
    forced = _forced
    if forced is not None and forced in supported:
        if not _runs_on(forced, device.type):
            raise RuntimeError(f"backend {forced!r} (forced by use_backend) cannot run tensors on device {device}")
        return forced
    available = _available if _available is not None else available_backends()
    for name in _PREFERENCE.get(device.type, ("reference",)):
        if name in available and name in supported:
            return name
    return "reference"


def kernel_module(device: torch.device):
    """The compiled kernels for `device` (used inside the custom ops)."""
    name = device.type
    module = getattr(_native._C, name, None) if _native._C is not None else None
    if module is None:
        raise RuntimeError(f"a2mamba-ops was built without {name} kernels; run with use_backend('reference')")
    return name, module


# Probe once at import: the first probe imports natten, which torch.compile
# cannot trace, so it must not happen inside a compiled region.
available_backends()
