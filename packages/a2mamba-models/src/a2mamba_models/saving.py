"""Saving weights as safetensors, and building a model that fits a checkpoint file."""

from __future__ import annotations

import os
from pathlib import Path

import timm
from torch import Tensor, nn

from .pretrained import CheckpointMismatch, checkpoint_filter_fn, read_checkpoint


def separate_shared(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state dict with every tensor in its own contiguous memory (safetensors refuses shared memory).

    A file written by `torch.save` keeps the two keys of a tied bias table (`rpb.0`, `rpb.1`) as one
    storage; they are written to safetensors as two equal tensors, as the published checkpoints hold them.
    """
    seen: set[tuple[int, int]] = set()
    separated = {}
    for key, tensor in state_dict.items():
        where = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        separated[key] = tensor.clone().contiguous() if where in seen else tensor.contiguous()
        seen.add(where)
    return separated


def convert_to_safetensors(source: str | os.PathLike, target: str | os.PathLike, use_ema: bool = False) -> int:
    """Write the weights of checkpoint `source` (any layout `read_checkpoint` takes) to `target`; returns the count."""
    from safetensors.torch import save_file

    state_dict = read_checkpoint(source, use_ema=use_ema)
    if not state_dict or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointMismatch(f"{source} holds no tensors to convert")
    target = Path(target)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output folder {target.parent} does not exist")
    save_file(separate_shared(state_dict), str(target), metadata={"format": "pt"})
    return len(state_dict)


def model_for_checkpoint(name: str, path: str | os.PathLike, **kwargs) -> nn.Module:
    """Model `name` with the weights of `path` loaded strictly, its classes and channels taken from the file.

    A fine-tuned checkpoint (another number of classes, or grey-scale input) builds the matching
    head and stem; every other key and shape must match `name` exactly.
    """
    state_dict = read_checkpoint(path)
    head = state_dict.get("classifier.4.weight")
    stem = state_dict.get("patch_embed.0.weight")
    kwargs.setdefault("num_classes", int(head.shape[0]) if head is not None else 0)
    if stem is not None and stem.dim() == 4:
        kwargs.setdefault("in_chans", int(stem.shape[1]))
    model = timm.create_model(name, **kwargs)
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    return model.eval()
