"""What ``a2mamba-validate`` does: score a checkpoint (or published weights) on a labelled image set.

A checkpoint of a2mamba-train carries what its run knew -- the model name, image size, evaluation
crop and interpolation, class names -- and these are the defaults here, so the command repeats the
trainer's own evaluation unless told otherwise. Any ``--img-size`` works: A2Mamba's global bias
tables are resized the way ``timm.create_model`` does it for published weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .config import ConfigError, build_config, resolve
from .data import DataError
from .weights import checkpoint_weights, load_weights


def _head_classes(weights: dict[str, Any], model_name: str) -> int | None:
    """The class count of the classifier in ``weights`` (for a bare state dict without metadata)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    head = getattr(cfg, "classifier", None)
    if not head:
        return None
    bias = weights.get(f"{head}.bias")
    weight = weights.get(f"{head}.weight")
    if bias is not None and bias.ndim == 1:
        return int(bias.shape[0])
    return int(weight.shape[0]) if weight is not None else None


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Top-1/top-5 (%), mean loss, image count and per-class top-1 of the requested weights, plus
    the evaluation settings used; ``args`` are a2mamba-validate's options."""
    import timm
    import torch

    from .data import build_loaders, check_class_folders
    from .distributed import init_distributed, shutdown
    from .engine import evaluate
    from .modelling import check_model_name, create_model, model_data_config

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected at least 1, got {args.batch_size}")
    if args.model:
        check_model_name(args.model)
    state: dict[str, Any] = {}
    weights = None
    if args.checkpoint:
        path = Path(args.checkpoint)
        state = ckpt.read_checkpoint_file(path, "--checkpoint")
        weights = checkpoint_weights(state, path, "--checkpoint", use_ema=args.use_ema)
    trained_as = state.get("arch") if isinstance(state.get("arch"), str) else None
    model_name = args.model or trained_as
    if not model_name:
        raise ConfigError("--model: required (the checkpoint does not say which model it holds)")
    check_model_name(model_name)
    if trained_as and trained_as != model_name:
        raise ConfigError(
            f"--checkpoint: {args.checkpoint} holds weights of {trained_as}, not {model_name}; "
            f"pass --model {trained_as} (or leave --model out)"
        )
    if args.dataset == "imagefolder":
        if not args.data_dir:
            raise ConfigError("DIR: required for an image folder (class sub-folders, or a root with val/)")
        root = Path(args.data_dir)
        if not root.is_dir():
            raise DataError(f"DIR: {root} does not exist or is not a folder")
        split = args.split or ("val" if (root / "val").is_dir() else ".")
        check_class_folders(root / split, "DIR")
    else:
        split = "test"
    trained = state.get("config") if isinstance(state.get("config"), dict) else {}
    trained_data = state.get("data_config") if isinstance(state.get("data_config"), dict) else {}
    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    default_size = trained.get("img_size") or (pretrained_cfg.input_size[-1] if pretrained_cfg is not None else 224)
    overrides = dict(
        model=model_name,
        dataset=args.dataset,
        data_dir=args.data_dir,
        val_split=split,
        img_size=args.img_size or default_size,
        batch_size=args.batch_size,
        workers=args.workers,
        crop_pct=args.crop_pct if args.crop_pct is not None else trained_data.get("crop_pct"),
        eval_interpolation=args.interpolation or trained_data.get("interpolation"),
        device=args.device,
        amp=args.amp,
        verify_images="none",
        mixup=0.0,
        cutmix=0.0,
    )
    config = build_config({k: v for k, v in overrides.items() if v is not None})
    resolved = resolve(config, world_size=1)
    info = init_distributed(config.device)
    try:
        data_config = model_data_config(resolved)
        loaders = build_loaders(resolved, data_config, info, train=False)
        saved_names = state.get("class_names")
        if args.dataset == "imagefolder" and saved_names and list(saved_names) != list(loaders.class_names):
            raise ConfigError(
                f"DIR: its class folders ({_listing(loaders.class_names)}) are not the classes "
                f"{args.checkpoint} was trained on ({_listing(saved_names)})"
            )
        class_names = list(saved_names) if saved_names else list(loaders.class_names)
        if args.pretrained:
            num_classes = pretrained_cfg.num_classes if pretrained_cfg else loaders.num_classes
        else:
            num_classes = state.get("num_classes") or _head_classes(weights, model_name) or loaders.num_classes
        model = create_model(resolved, num_classes, pretrained=args.pretrained, local_weights_flag="--checkpoint")
        if weights is not None:
            load_weights(model, weights, str(args.checkpoint), "--checkpoint")
        if num_classes != loaders.num_classes and args.dataset == "imagefolder":
            raise ConfigError(f"DIR: {loaders.num_classes} class folders, but the model predicts {num_classes} classes")
        if len(class_names) != num_classes:
            class_names = [str(i) for i in range(num_classes)]
        model.to(info.device)
        with torch.no_grad():
            stats = evaluate(model, loaders.eval, info, amp=args.amp, num_classes=num_classes)
    finally:
        shutdown()
    stats["class_top1"] = dict(zip(class_names, stats["class_top1"], strict=True))
    stats.update(
        model=model_name,
        img_size=resolved.img_size,
        crop_pct=data_config["crop_pct"],
        interpolation=data_config["interpolation"],
        checkpoint=args.checkpoint,
        use_ema=args.use_ema,
    )
    return stats


def _listing(names) -> str:
    names = list(names)
    return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
