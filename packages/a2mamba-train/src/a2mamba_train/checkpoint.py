"""What a training checkpoint holds besides the weights (RNG states), and reading checkpoint files
with errors a user can act on. Writing goes through the run folder's atomic writes.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError
from .run_folder import atomic_write

FORMAT = "a2mamba-train/1"
# What a checkpoint needs for --resume; a published or bare state dict holds only weights.
TRAINING_STATE_KEYS = ("model", "optimizer", "epoch", "step", "rng")


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda stream: torch.save(state, stream))


def load(path: Path | str) -> dict[str, Any]:
    """A checkpoint, read without running pickled code (tensors and plain containers only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint_file(path: Path, flag: str) -> dict[str, Any]:
    """The dict saved in ``path``, or a ConfigError in one line naming ``flag``, the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag}: no file {path}")
    try:
        state = load(path)
    except pickle.UnpicklingError:
        if zipfile.is_zipfile(path):
            raise ConfigError(
                f"{flag}: {path} holds pickled objects other than tensors and plain containers, which are not "
                "loaded (they could run code); save only the state dict: torch.save(model.state_dict(), FILE)"
            ) from None
        raise ConfigError(f"{flag}: {path} is not a PyTorch checkpoint (another kind of file, or corrupt)") from None
    except Exception as err:  # noqa: BLE001 - torch reports text, random bytes or a cut-off file in many ways
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{flag}: {path} is not a PyTorch checkpoint (another kind of file, or truncated: {detail})"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{flag}: {path} holds a {type(state).__name__}, not a checkpoint or a state dict")
    return state


def read_training_checkpoint(path: Path, flag: str = "--resume") -> dict[str, Any]:
    """A checkpoint written by a2mamba-train, with everything needed to continue the run."""
    state = read_checkpoint_file(path, flag)
    missing = [key for key in TRAINING_STATE_KEYS if key not in state]
    if missing:
        raise ConfigError(
            f"{flag}: {path} is not a checkpoint of a2mamba-train (it lacks {', '.join(missing)}); "
            "to start a new run from its weights use --initial-checkpoint FILE"
        )
    return state


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
