"""Console scripts: ``a2mamba-train`` and ``a2mamba-validate``.

Every setting of TrainConfig is an option (``--batch-size 128``, ``--model-ema/--no-model-ema``,
``--scale 0.08 1``); only the options given on the command line override the recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import FIELDS, ConfigError, build_config, recipe_names, resolve, to_json
from .data import DataError
from .fashion_mnist import FashionMNISTMissing
from .nonfinite import NonFiniteLossError

EXIT_USAGE = 2
EXIT_NONFINITE = 3

QUICK_START = """examples:
  a2mamba-train --recipe fashion-mnist            # the demo: ~10 min on 2 CPU cores, no download
  a2mamba-train --recipe tiny --data-dir /data/imagenet
  torchrun --nproc-per-node 8 -m a2mamba_train --recipe tiny --data-dir /data/imagenet
  a2mamba-train --recipe tiny --print-config      # the resolved settings as JSON
  a2mamba-train --resume auto --output runs/tiny-20250101-120000
"""


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, field in FIELDS.items():
        if name == "recipe":
            continue
        kind = field.metadata["kind"]
        base = kind[4:] if kind.startswith("opt_") else kind
        group = groups.setdefault(
            "settings",
            parser.add_argument_group(
                "settings (each overrides the recipe; see --print-config for the resolved values)"
            ),
        )
        flag = "--" + name.replace("_", "-")
        if base == "bool":
            group.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=field.metadata["help"],
            )
        elif base in ("ints", "floats"):
            group.add_argument(
                flag, dest=name, nargs="+", default=argparse.SUPPRESS, metavar="N", help=field.metadata["help"]
            )
        else:
            group.add_argument(
                flag, dest=name, default=argparse.SUPPRESS, metavar=base.upper(), help=field.metadata["help"]
            )


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2mamba-train",
        description="Train A2Mamba (or any timm model) with the published recipes, on one process or under torchrun.",
        epilog=QUICK_START,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe", default=argparse.SUPPRESS, help=f"recipe name ({', '.join(recipe_names())}) or a .toml file"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration as JSON and exit")
    parser.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument("--version", action="version", version=f"a2mamba-train {__version__}")
    _add_setting_options(parser)
    return parser


def _fail(prog: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _worker_message(err: BaseException) -> str:
    """A data-loader worker re-raises with its traceback in the message; keep the last line."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else str(err)
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    for candidate in (prefix, f"{type(err).__name__}: "):
        if last.startswith(candidate):
            return last[len(candidate) :]
    return last


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = train_parser()
    args = vars(parser.parse_args(argv))
    print_config = args.pop("print_config")
    if args.pop("list_recipes"):
        print("\n".join(recipe_names()))
        return 0
    prog = "a2mamba-train"
    try:
        from .trainer import saved_config_for_resume

        saved = saved_config_for_resume(args)
        config = build_config(args, saved=saved)
        if print_config:
            print(to_json(resolve(config)))
            return 0
        from .modelling import check_model_name

        check_model_name(config.model)
        from .distributed import init_distributed, shutdown
        from .trainer import run_training

        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        info = init_distributed(config.device)
        try:
            result = run_training(config, info)
        finally:
            shutdown()
    except (ConfigError, FashionMNISTMissing) as err:
        return _fail(prog, str(err))
    except DataError as err:
        return _fail(prog, _worker_message(err))
    except NonFiniteLossError as err:
        return _fail(prog, str(err), EXIT_NONFINITE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; continue with --resume auto", file=sys.stderr)
        return 130
    if info.is_main and result:
        what = "Fashion-MNIST test" if config.dataset == "fashion-mnist" else "validation"
        print(
            f"final {what} accuracy: top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}% "
            f"(loss {result['eval_loss']:.4f}); run folder, checkpoints and curves.png written"
        )
    return 0


# --------------------------------------------------------------------------------------------------
# a2mamba-validate
# --------------------------------------------------------------------------------------------------


def validate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2mamba-validate",
        description="Top-1/top-5 and loss of a model on an ImageNet-style folder (or the Fashion-MNIST test set), "
        "with the model's own crop and interpolation.",
    )
    parser.add_argument(
        "data_dir",
        nargs="?",
        metavar="DIR",
        help="folder of class sub-folders, or a dataset root holding val/ (imagefolder)",
    )
    parser.add_argument("--model", required=True, help="timm model name, e.g. a2mamba_t")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a checkpoint of a2mamba-train or a published .pth")
    weights.add_argument("--pretrained", action="store_true", help="the model's published weights")
    parser.add_argument("--use-ema", action="store_true", help="evaluate the EMA weights of the checkpoint")
    parser.add_argument("--dataset", default="imagefolder", choices=("imagefolder", "fashion-mnist"))
    parser.add_argument("--split", default=None, help="sub-folder of DIR to evaluate (default: val/ if present)")
    parser.add_argument("--img-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--crop-pct", type=float, default=None, help="default: the model's")
    parser.add_argument("--interpolation", default=None, help="default: the model's")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--amp", default="off", choices=("off", "float16", "bfloat16"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--results-file", help="also write the results as JSON here")
    return parser


def _checkpoint_weights(path: Path, use_ema: bool) -> tuple[dict[str, Any], int | None]:
    from . import checkpoint as ckpt

    if not path.is_file():
        raise ConfigError(f"--checkpoint: no file {path}")
    try:
        state = ckpt.load(path)
    except Exception as err:  # torch reports unreadable files in many ways
        raise ConfigError(f"--checkpoint: cannot read {path}: {err}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"--checkpoint: {path} holds no state dict")
    keys = ("model_ema", "state_dict_ema") if use_ema else ("model", "state_dict")
    weights = next((state[k] for k in keys if isinstance(state.get(k), dict)), None)
    if weights is None:
        if use_ema:
            raise ConfigError(f"--use-ema: {path} has no EMA weights")
        weights = state  # a bare state dict, as published
    weights = {k[7:] if k.startswith("module.") else k: v for k, v in weights.items()}
    return weights, state.get("num_classes")


def validate_main(argv: Sequence[str] | None = None) -> int:
    args = validate_parser().parse_args(argv)
    prog = "a2mamba-validate"
    try:
        return _validate(args)
    except (ConfigError, FashionMNISTMissing) as err:
        return _fail(prog, str(err))
    except DataError as err:
        return _fail(prog, _worker_message(err))


def _validate(args: argparse.Namespace) -> int:
    import timm
    import torch

    from .data import build_loaders, check_class_folders
    from .distributed import init_distributed, shutdown
    from .engine import evaluate
    from .modelling import check_model_name, create_model
    from .trainer import model_data_config

    check_model_name(args.model)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected at least 1, got {args.batch_size}")
    weights, saved_classes = (None, None)
    if args.checkpoint:
        weights, saved_classes = _checkpoint_weights(Path(args.checkpoint), args.use_ema)
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
    pretrained_cfg = timm.models.get_pretrained_cfg(args.model)
    default_size = pretrained_cfg.input_size[-1] if pretrained_cfg is not None else 224
    overrides = dict(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        val_split=split,
        img_size=args.img_size or default_size,
        batch_size=args.batch_size,
        workers=args.workers,
        crop_pct=args.crop_pct,
        eval_interpolation=args.interpolation,
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
        num_classes = saved_classes or (
            pretrained_cfg.num_classes if args.pretrained and pretrained_cfg else loaders.num_classes
        )
        try:
            model = create_model(resolved, num_classes, pretrained=args.pretrained)
        except (ValueError, RuntimeError, OSError) as err:  # e.g. no published weights, or no network
            raise ConfigError(f"--model {args.model}: cannot create the model: {err}") from None
        if weights is not None:
            missing, unexpected = model.load_state_dict(weights, strict=False)
            if missing or unexpected:
                raise ConfigError(
                    f"--checkpoint: the weights do not fit {args.model} "
                    f"(missing {len(missing)} keys, e.g. {missing[:3]}; "
                    f"unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
                )
        head_classes = (
            model.get_classifier().out_channels
            if hasattr(model.get_classifier(), "out_channels")
            else getattr(model, "num_classes", num_classes)
        )
        if head_classes != loaders.num_classes and args.dataset == "imagefolder":
            raise ConfigError(
                f"DIR: {loaders.num_classes} class folders, but the model predicts {head_classes} classes"
            )
        model.to(info.device)
        with torch.no_grad():
            stats = evaluate(model, loaders.eval, info, amp=args.amp)
    finally:
        shutdown()
    stats.update(
        model=args.model,
        img_size=resolved["img_size"],
        crop_pct=data_config["crop_pct"],
        interpolation=data_config["interpolation"],
        checkpoint=args.checkpoint,
        use_ema=args.use_ema,
    )
    print(
        f"{args.model}: top-1 {stats['top1']:.3f}%  top-5 {stats['top5']:.3f}%  loss {stats['loss']:.4f}  "
        f"({stats['count']} images, {stats['img_size']} px, crop_pct {stats['crop_pct']}, "
        f"{stats['interpolation']})"
    )
    if args.results_file:
        Path(args.results_file).write_text(json.dumps(stats, indent=2) + "\n")
    return 0
