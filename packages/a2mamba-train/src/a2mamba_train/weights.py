"""Putting the weights of a checkpoint file into a model, for a2mamba-validate and --initial-checkpoint.

A2Mamba models go through the models package's own checkpoint filter, the one ``timm.create_model``
uses for published weights: it checks the tied bias tables and resizes the global bias tables to
the model's ``image_size``, so a checkpoint trained at one resolution loads at any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

# Where a2mamba-train, timm's train.py and published files keep the weights, in order of preference.
MODEL_KEYS = ("model", "state_dict")
EMA_KEYS = ("model_ema", "state_dict_ema")


def checkpoint_weights(state: dict[str, Any], path: Path, flag: str, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The model weights held in a loaded checkpoint (the EMA weights with ``use_ema``), prefixes removed."""
    from a2mamba_models.pretrained import unwrap_state_dict

    keys = EMA_KEYS if use_ema else MODEL_KEYS
    weights = next((state[k] for k in keys if isinstance(state.get(k), dict)), None)
    if weights is None:
        if use_ema:
            raise ConfigError(f"--use-ema: {path} has no EMA weights")
        weights = state  # a bare state dict, as published
    if not weights or not all(torch.is_tensor(v) for v in weights.values()):
        raise ConfigError(
            f"{flag}: {path} holds no model weights (expected a state dict, or one under "
            f"{' / '.join(repr(k) for k in MODEL_KEYS)})"
        )
    return unwrap_state_dict(weights)


def classifier_prefix(model: torch.nn.Module) -> str | None:
    """The classifier's parameter prefix as timm's pretrained_cfg names it (``head``, ``classifier.4``, ...)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier") if isinstance(cfg, dict) else None
    return f"{name}." if name else None


def _examples(items: list[str]) -> str:
    return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")


def load_weights(
    model: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    source: str,
    flag: str,
    strict: bool = True,
    new_classifier_ok: bool = False,
) -> list[str]:
    """Load ``weights`` into ``model``; returns notes on what was not loaded.

    ``strict``: every weight must be there with the model's shape, else a ConfigError in one line.
    ``new_classifier_ok``: a classifier of another class count is left at its fresh initialisation.
    """
    weights = dict(weights)
    filter_error = None
    if _is_a2mamba(model):
        from a2mamba_models import CheckpointMismatch, checkpoint_filter_fn

        try:
            weights = checkpoint_filter_fn(weights, model)
        except CheckpointMismatch as err:  # summarised below, or reported as is if nothing else is wrong
            filter_error = err
    expected = model.state_dict()
    head = classifier_prefix(model)
    notes = []
    differing: list[str] = []
    if head is not None and new_classifier_ok:
        differing = [
            k for k, v in weights.items() if k.startswith(head) and k in expected and v.shape != expected[k].shape
        ]
        if differing:
            for key in differing:
                del weights[key]
            notes.append(f"the classifier ({head[:-1]}) starts from scratch: {source} was trained for other classes")
    missing = [k for k in expected if k not in weights and k not in differing]
    unexpected = [k for k in weights if k not in expected]
    wrong_shape = [k for k in weights if k in expected and weights[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if wrong_shape:
        shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong_shape]
        problems.append(f"{len(wrong_shape)} of another shape ({_examples(shapes)})")
    if problems and strict:
        raise ConfigError(
            f"{flag}: {source} does not fit this model (weights {'; '.join(problems)}): "
            "a checkpoint of another model or of other settings?"
        )
    if filter_error is not None and strict:
        raise ConfigError(f"{flag}: {source} does not fit this model: {_one_line(filter_error)}")
    if problems:
        notes.append(f"not loaded from {source}: weights {'; '.join(problems)}")
        for key in unexpected + wrong_shape:
            del weights[key]
    model.load_state_dict(weights, strict=False)
    return notes


def _is_a2mamba(model: torch.nn.Module) -> bool:
    try:
        from a2mamba_models import A2Mamba
    except ImportError:  # pragma: no cover - the package is a dependency
        return False
    return isinstance(model, A2Mamba)


def _one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
