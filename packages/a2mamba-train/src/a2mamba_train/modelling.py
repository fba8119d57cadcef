"""Model creation through timm (A2Mamba variants come from a2mamba_models), and the optimiser."""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.optim import create_optimizer_v2, param_groups_weight_decay

from .config import ConfigError, ResolvedConfig

try:  # registers a2mamba_n/t/s/b/l and a2mamba_test with timm
    from a2mamba_models import PretrainedWeightsUnavailable
except ImportError as err:  # pragma: no cover - the package is a dependency
    _MODELS_IMPORT_ERROR: ImportError | None = err

    class PretrainedWeightsUnavailable(RuntimeError):  # type: ignore[no-redef]
        pass

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


def create_model(
    resolved: ResolvedConfig, num_classes: int, pretrained: bool | None = None, local_weights_flag: str = ""
) -> torch.nn.Module:
    """The configured model; A2Mamba takes its per-stage gradient checkpointing counts directly.

    Published weights that cannot be fetched are a ConfigError saying how to get the file and
    which option (``local_weights_flag``) takes it instead."""
    name = resolved.model
    check_model_name(name)
    kwargs: dict[str, Any] = dict(num_classes=num_classes, drop_path_rate=resolved.drop_path)
    counts = list(resolved.grad_checkpointing)
    if is_a2mamba(name):
        kwargs.update(image_size=resolved.img_size, use_checkpoint=counts)
    else:
        kwargs["img_size"] = resolved.img_size
    pretrained = resolved.pretrained if pretrained is None else pretrained
    try:
        try:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except TypeError:
            if "img_size" not in kwargs:
                raise
            # models with a fixed input size do not take img_size
            kwargs.pop("img_size")
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (PretrainedWeightsUnavailable, OSError) as err:  # OSError: timm's hub download of other models
        if not pretrained:
            raise
        raise ConfigError(pretrained_unavailable_message(name, err, local_weights_flag)) from None
    if not is_a2mamba(name) and any(counts):
        model.set_grad_checkpointing(True)  # other models know only all-or-nothing
    return model


def pretrained_unavailable_message(name: str, err: BaseException, local_weights_flag: str) -> str:
    """One line: why the published weights of ``name`` could not be had, and how to use a local copy."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    filename = getattr(cfg, "hf_hub_filename", None)
    if not hub_id and not getattr(cfg, "url", None):
        return f"--pretrained: {name} has no pretrained weights; drop --pretrained"
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    reason = lines[0] if lines else type(err).__name__
    reason = reason.split(f"weights of {name}: ", 1)[-1].rstrip(".")
    if hub_id:
        what = f"{hub_id} {filename}" if filename else hub_id
        how = f"on a machine with internet access run `hf download {what} --local-dir DIR`"
    else:
        how = f"download {cfg.url} on a machine with internet access"
    use = f" and pass the file with {local_weights_flag} FILE" if local_weights_flag else ""
    return f"--pretrained: cannot get the published weights of {name} ({reason}); {how}{use}"


def create_optimizer(model: torch.nn.Module, resolved: ResolvedConfig) -> torch.optim.Optimizer:
    """AdamW (or the named timm optimiser) with timm's weight-decay grouping: every parameter with
    at most one dimension (norms, biases, ``Ds``, ``dt_projs_bias``) is exempt, every other one
    decays -- including ``A_logs`` (shape ``(C, 1)``) and the bias tables, as the published runs did."""
    groups = param_groups_weight_decay(model, resolved.weight_decay, no_weight_decay_list=())
    extra: dict[str, Any] = {}
    if resolved.opt_eps is not None:
        extra["eps"] = resolved.opt_eps
    if resolved.opt_betas is not None:
        extra["betas"] = tuple(resolved.opt_betas)
    try:
        return create_optimizer_v2(
            groups, opt=resolved.opt, lr=resolved.lr, weight_decay=resolved.weight_decay, **extra
        )
    except (AssertionError, ValueError) as err:
        raise ConfigError(f"--opt: cannot create optimizer {resolved.opt!r}: {err}") from None


def model_data_config(resolved: ResolvedConfig) -> dict[str, Any]:
    """The model's own evaluation settings (timm pretrained_cfg), with the config's overrides."""
    check_model_name(resolved.model)
    cfg = timm.models.get_pretrained_cfg(resolved.model)
    cfg = cfg.to_dict() if cfg is not None else {}
    data_config = {
        "mean": tuple(cfg.get("mean") or IMAGENET_DEFAULT_MEAN),
        "std": tuple(cfg.get("std") or IMAGENET_DEFAULT_STD),
        "interpolation": cfg.get("interpolation") or "bicubic",
        "crop_pct": cfg.get("crop_pct") or DEFAULT_CROP_PCT,
        "crop_mode": cfg.get("crop_mode") or "center",
    }
    if resolved.crop_pct is not None:
        data_config["crop_pct"] = resolved.crop_pct
    if resolved.eval_interpolation is not None:
        data_config["interpolation"] = resolved.eval_interpolation
    return data_config
