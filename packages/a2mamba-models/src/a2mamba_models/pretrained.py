"""Reading, checking and loading A2Mamba checkpoints (published or local).

Checkpoints are read with `torch.load(weights_only=True)`: a file that needs to
execute pickled code is refused, never run. Every failure says what was wrong
and what to do about it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Where a checkpoint's state dict may sit inside the saved object, in the order they are tried.
STATE_DICT_KEYS = ("state_dict", "model", "state_dict_ema")
_PREFIXES = ("module.", "_orig_mod.")
HUB_PROBE_TIMEOUT_S = 3.0
# File names of timm's hub layout (config.json + weights), in the order they are tried.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class PretrainedWeightsUnavailable(RuntimeError):
    """The pretrained weights could not be fetched (offline, unreachable hub, missing package)."""


class CheckpointMismatch(RuntimeError):
    """A checkpoint does not fit the model (missing / unexpected keys, wrong shapes, untied tables)."""


# ----------------------------------------------------------------------------- reading


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unwrap_state_dict(obj, use_ema: bool = False) -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint object, with `module.` / `_orig_mod.` prefixes removed."""
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(f"checkpoint must hold a dict (a state dict), got {type(obj).__name__}")
    if not all(isinstance(v, Tensor) for v in obj.values()):
        keys = ("state_dict_ema", *STATE_DICT_KEYS) if use_ema else STATE_DICT_KEYS
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            raise CheckpointMismatch(
                "checkpoint is neither a state dict nor a dict holding one under "
                f"{' / '.join(repr(k) for k in STATE_DICT_KEYS)}; its top-level keys are {sorted(map(str, obj))[:10]}"
            )
    cleaned = {}
    for key, value in obj.items():
        key = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        cleaned[key] = value
    return cleaned


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length, then its JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def _weights_in_folder(folder: Path) -> Path:
    for name in HUB_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} is a folder without weights: expected {' or '.join(HUB_WEIGHT_FILES)} in it")


def _unreadable(path: Path, detail: str) -> CheckpointMismatch:
    return CheckpointMismatch(
        f"cannot read {path}: it is not a PyTorch checkpoint or a safetensors file, or it is truncated or corrupt "
        f"({detail}). Pass a file written by torch.save or safetensors; download it again if it may be incomplete"
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors reports a damaged header in several ways
        raise _unreadable(path, _first_line(e)) from e


def _load_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            # A pickle that names code to run (a class, a function) to rebuild its objects: refuse, say how to fix.
            raise CheckpointMismatch(
                f"refusing to load {path}: it is not a plain weights file (torch.load(weights_only=True) failed: "
                f"{str(e).splitlines()[0]}). Re-save just the state dict: torch.save(model.state_dict(), path)"
            ) from e
        raise _unreadable(path, "not a valid pickle") from e
    except Exception as e:  # random bytes or text end in IndexError, KeyError, ValueError, RuntimeError, ...
        raise _unreadable(path, _first_line(e)) from e


def read_checkpoint(path: str | os.PathLike, sha256: str | None = None, use_ema: bool = False) -> dict[str, Tensor]:
    """Load a checkpoint file safely and return its state dict.

    `path`: a `torch.save` file (read with `weights_only=True`), a `.safetensors` file, or a folder in
    timm's hub layout (`model.safetensors` or `pytorch_model.bin`).
    `sha256`: when given, the file's SHA-256 must match (checked before reading).
    `use_ema`: prefer `state_dict_ema` when the file holds several state dicts.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = _weights_in_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.strip().lower():
            raise CheckpointMismatch(
                f"SHA-256 of {path} is {actual}, expected {sha256}; the file is corrupt or not the expected one"
            )
    obj = _load_safetensors(path) if _is_safetensors(path) else _load_torch(path)
    return unwrap_state_dict(obj, use_ema=use_ema)


# ----------------------------------------------------------------------------- checking


def _tied_pairs(model: nn.Module) -> list[tuple[str, str]]:
    from .mass import TiedBiasTables

    return [(f"{name}.0", f"{name}.1") for name, m in model.named_modules() if isinstance(m, TiedBiasTables)]


def _resize_global_tables(state_dict: dict[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    """A global bias table made for another `image_size` is resized bicubically, as the forward pass does."""
    for key, target in expected.items():
        value = state_dict.get(key)
        if not key.endswith(".rpb.2") or not isinstance(value, Tensor) or value.shape == target.shape:
            continue
        if value.dim() == 4 and value.shape[:2] == target.shape[:2]:
            resized = F.interpolate(value.double(), size=tuple(target.shape[-2:]), mode="bicubic", align_corners=False)
            state_dict[key] = resized.to(value.dtype)


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module) -> dict[str, Tensor]:
    """Prepare a checkpoint for `model` and reject one that cannot be its weights.

    Unwraps/cleans the state dict, requires the tied bias tables to be equal,
    resizes global bias tables for another `image_size`, and raises
    `CheckpointMismatch` naming every missing / unexpected key and wrong shape.
    The classifier (`classifier.4`) and the first conv may differ when the
    model was built with other `num_classes` / `in_chans` (timm adapts those).
    """
    state_dict = unwrap_state_dict(state_dict)
    for first, second in _tied_pairs(model):
        a, b = state_dict.get(first), state_dict.get(second)
        if isinstance(a, Tensor) and isinstance(b, Tensor) and (a.shape != b.shape or not torch.equal(a, b)):
            raise CheckpointMismatch(
                f"{first} and {second} must be equal: they are one shared bias table in A2Mamba, "
                "but this checkpoint holds two different tensors"
            )
    expected = model.state_dict()
    _resize_global_tables(state_dict, expected)

    adaptable = ("classifier.4.", "patch_embed.0.")
    missing = [k for k in expected if k not in state_dict and not k.startswith("classifier.4.")]
    unexpected = [k for k in state_dict if k not in expected and not k.startswith("classifier.4.")]
    wrong_shape = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, Tensor) and v.shape != expected[k].shape and not k.startswith(adaptable)
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatch(mismatch_message(missing, unexpected, wrong_shape))
    return state_dict


def mismatch_message(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    def listing(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
        return f"\n  {title} ({len(items)}): {shown}"

    text = "checkpoint does not match the model (wrong variant, or a truncated / foreign file?)"
    if missing:
        text += listing("missing keys", missing)
    if unexpected:
        text += listing("unexpected keys", unexpected)
    if wrong_shape:
        text += listing("shape mismatches", wrong_shape)
    return text


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    sha256: str | None = None,
    strict: bool = True,
    use_ema: bool = False,
):
    """Load a checkpoint file into an A2Mamba model.

    Accepts the state dict alone or under `state_dict` / `model` / `state_dict_ema`,
    with or without a `module.` prefix; reads it with `weights_only=True`;
    checks `sha256` when given. With `strict=True` any missing / unexpected key
    or wrong shape raises `CheckpointMismatch`. Returns `load_state_dict`'s result.
    """
    state_dict = read_checkpoint(path, sha256=sha256, use_ema=use_ema)
    if strict:
        state_dict = checkpoint_filter_fn(state_dict, model)
        if model.state_dict().keys() != state_dict.keys():
            missing = [k for k in model.state_dict() if k not in state_dict]
            unexpected = [k for k in state_dict if k not in model.state_dict()]
            raise CheckpointMismatch(mismatch_message(missing, unexpected, []))
    else:
        _resize_global_tables(state_dict, model.state_dict())
    return model.load_state_dict(state_dict, strict=strict)


# ----------------------------------------------------------------------------- hub


def _unavailable(variant: str, hub_id: str, filename: str, reason: str) -> PretrainedWeightsUnavailable:
    basename = filename.rsplit("/", 1)[-1]
    return PretrainedWeightsUnavailable(
        f"cannot get the pretrained weights of {variant}: {reason}.\n"
        f"Download '{filename}' from the Hugging Face hub repo '{hub_id}' on a machine with internet access "
        f"(https://huggingface.co/{hub_id}/blob/main/{filename}, or "
        f"`hf download {hub_id} {filename}`), copy it here and pass it with\n"
        f"  timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/to/{basename}'))\n"
        f"or load it into a model with a2mamba_models.load_checkpoint(model, '/path/to/{basename}')."
    )


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port opens within `timeout` seconds (DNS included), else why not."""
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port} is unreachable ({e})")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"no answer from {host}:{port} within {timeout:.0f} s"


def download_from_hub(variant: str, hub_id: str, filename: str, cache_dir=None) -> str:
    """Local path of `filename` from the hub (cache first); fails within seconds when offline."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise _unavailable(variant, hub_id, filename, "huggingface_hub is not installed") from None
    try:
        return hf_hub_download(hub_id, filename, cache_dir=cache_dir, local_files_only=True)
    except Exception:
        pass  # not cached yet
    if constants.HF_HUB_OFFLINE:
        raise _unavailable(variant, hub_id, filename, "HF_HUB_OFFLINE is set and the file is not in the local cache")
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    reason = _probe(endpoint.hostname or "huggingface.co", port, HUB_PROBE_TIMEOUT_S)
    if reason is not None:
        raise _unavailable(variant, hub_id, filename, f"the hub is not reachable: {reason}")
    try:
        return hf_hub_download(hub_id, filename, cache_dir=cache_dir)
    except Exception as e:
        raise _unavailable(variant, hub_id, filename, f"download failed: {type(e).__name__}: {e}") from e


def resolve_pretrained_state_dict(variant: str, pretrained_cfg, overlay: Mapping, sha256=None, cache_dir=None):
    """The state dict for `pretrained=True`: an in-memory one, a local file, or the hub's file."""
    from timm.models import get_pretrained_cfg

    if overlay.get("state_dict") is not None:
        return unwrap_state_dict(overlay["state_dict"])
    cfg = pretrained_cfg if isinstance(pretrained_cfg, Mapping) else None
    if cfg is None:
        tagged = f"{variant}.{pretrained_cfg}" if isinstance(pretrained_cfg, str) else variant
        found = get_pretrained_cfg(tagged)
        cfg = found.to_dict() if found is not None else {}
    cfg = {**cfg, **overlay}
    if cfg.get("file"):  # a local file, or a folder in timm's hub layout (`local-dir:` model names)
        return read_checkpoint(cfg["file"], sha256=sha256)
    hub_id, filename = cfg.get("hf_hub_id"), cfg.get("hf_hub_filename")
    if not hub_id:
        raise PretrainedWeightsUnavailable(f"{variant} has no pretrained weights; use pretrained=False")
    if filename:
        return read_checkpoint(download_from_hub(variant, hub_id, filename, cache_dir=cache_dir), sha256=sha256)
    # A repository in timm's hub layout (`hf-hub:` model names): safetensors weights first.
    for name in HUB_WEIGHT_FILES[:-1]:
        try:
            return read_checkpoint(download_from_hub(variant, hub_id, name, cache_dir=cache_dir), sha256=sha256)
        except PretrainedWeightsUnavailable:
            pass
    return read_checkpoint(download_from_hub(variant, hub_id, HUB_WEIGHT_FILES[-1], cache_dir=cache_dir), sha256=sha256)
