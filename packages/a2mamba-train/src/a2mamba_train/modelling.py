"""Model creation through timm (A2Mamba variants come from a2mamba_models), and the optimiser."""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2, param_groups_weight_decay

from .config import ConfigError

try:  # registers a2mamba_n/t/s/b/l and a2mamba_test with timm
    import a2mamba_models  # noqa: F401
except ImportError as err:  # pragma: no cover - the package is a dependency
    _MODELS_IMPORT_ERROR: ImportError | None = err
else:
    _MODELS_IMPORT_ERROR = None


def check_model_name(name: str) -> None:
    if timm.is_model(name):
        return
    hint = ""
    if name.startswith("a2mamba") and _MODELS_IMPORT_ERROR is not None:
        hint = f" (a2mamba_models failed to import: {_MODELS_IMPORT_ERROR})"
    close = difflib.get_close_matches(name, timm.list_models("a2mamba*") + timm.list_models(), n=4)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"--model: unknown model {name!r}{hint}{suggestion}")


def is_a2mamba(name: str) -> bool:
    return name.startswith("a2mamba")


def create_model(resolved: dict[str, Any], num_classes: int, pretrained: bool | None = None) -> torch.nn.Module:
    """The configured model; A2Mamba takes its per-stage gradient checkpointing counts directly."""
    name = resolved["model"]
    check_model_name(name)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_path_rate=resolved["drop_path"])
    counts = list(resolved["grad_checkpointing"])
    if is_a2mamba(name):
        kwargs.update(image_size=resolved["img_size"], use_checkpoint=counts)
    else:
        kwargs["img_size"] = resolved["img_size"]
    pretrained = resolved["pretrained"] if pretrained is None else pretrained
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError:
        if "img_size" not in kwargs:
            raise
        # models with a fixed input size do not take img_size
        kwargs.pop("img_size")
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if not is_a2mamba(name) and any(counts):
        model.set_grad_checkpointing(True)  # other models know only all-or-nothing
    return model


def create_optimizer(model: torch.nn.Module, resolved: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW (or the named timm optimiser) with timm's weight-decay grouping: every parameter with
    at most one dimension (norms, biases, ``Ds``, ``dt_projs_bias``) is exempt, every other one
    decays -- including ``A_logs`` (shape ``(C, 1)``) and the bias tables, as the published runs did."""
    groups = param_groups_weight_decay(model, resolved["weight_decay"], no_weight_decay_list=())
    extra: dict[str, Any] = {}
    if resolved["opt_eps"] is not None:
        extra["eps"] = resolved["opt_eps"]
    if resolved["opt_betas"] is not None:
        extra["betas"] = tuple(resolved["opt_betas"])
    try:
        return create_optimizer_v2(
            groups, opt=resolved["opt"], lr=resolved["lr"], weight_decay=resolved["weight_decay"], **extra
        )
    except (AssertionError, ValueError) as err:
        raise ConfigError(f"--opt: cannot create optimizer {resolved['opt']!r}: {err}") from None
