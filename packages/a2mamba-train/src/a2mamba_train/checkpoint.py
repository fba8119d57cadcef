"""Checkpoints that survive a kill at any moment, the RNG states they carry, and best-k bookkeeping.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed over
its final name: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pth"
BEST_PREFIX = "best-"
PRE_DISTILL = "pre-distill.pth"


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes private files; a run folder is ordinary output
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda stream: torch.save(state, stream))


def atomic_copy(source: Path, target: Path) -> None:
    def write(stream):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, stream)

    atomic_write(target, write)


def load(path: Path | str) -> dict[str, Any]:
    """A checkpoint, read without running pickled code (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_states() -> dict[str, Any]:
    # numpy's key array is stored as a tensor so the whole checkpoint loads with weights_only=True
    name, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    saved = states["numpy"]
    np.random.set_state(
        (
            saved["name"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder (``last.pth``, else the newest best/pre-distill)."""
    last = run_dir / LAST
    if last.is_file():
        return last
    candidates = [p for p in run_dir.glob("*.pth") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def best_name(epoch: int, top1: float) -> str:
    return f"{BEST_PREFIX}epoch{epoch:04d}-top1-{top1:.3f}.pth"
