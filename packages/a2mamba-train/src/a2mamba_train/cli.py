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

from . import __version__
from .config import FIELDS, ConfigError, build_config, recipe_names, resolve, to_json
from .data import DataError
from .fashion_mnist import FashionMNISTMissing
from .nonfinite import NonFiniteLossError

EXIT_USAGE = 2
EXIT_NONFINITE = 3

QUICK_START = """examples:
  a2mamba-train --recipe fashion-mnist            # the demo: ~5 min on 2 CPU cores, no download
  a2mamba-train --recipe a2mamba_t-imagenet --data-dir /data/imagenet
  torchrun --nproc-per-node 8 -m a2mamba_train --recipe a2mamba_t-imagenet --data-dir /data/imagenet
  a2mamba-train --recipe a2mamba_t-imagenet --print-config      # the resolved settings as JSON
  a2mamba-train --resume auto --output runs/a2mamba_t-imagenet-20250101-120000
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
    # one line whatever the message: a library's multi-line text must not look like a traceback
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"{prog}: error: {text}", file=sys.stderr)
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
        from .run_folder import saved_config_for_resume

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
    parser.add_argument(
        "--model",
        help="timm model name, e.g. a2mamba_t (default: the model the checkpoint was trained as)",
    )
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a checkpoint of a2mamba-train or a published .pth")
    weights.add_argument("--pretrained", action="store_true", help="the model's published weights")
    parser.add_argument("--use-ema", action="store_true", help="evaluate the EMA weights of the checkpoint")
    parser.add_argument("--dataset", default="imagefolder", choices=("imagefolder", "fashion-mnist"))
    parser.add_argument("--split", default=None, help="sub-folder of DIR to evaluate (default: val/ if present)")
    parser.add_argument(
        "--img-size",
        type=int,
        default=None,
        help="any size (default: the training size, else the model's)",
    )
    parser.add_argument("--crop-pct", type=float, default=None, help="default: the checkpoint's, else the model's")
    parser.add_argument("--interpolation", default=None, help="default: the checkpoint's, else the model's")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--amp", default="off", choices=("off", "float16", "bfloat16"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--results-file", help="also write the results (with per-class top-1) as JSON here")
    parser.add_argument("--version", action="version", version=f"a2mamba-validate {__version__}")
    return parser


def validate_main(argv: Sequence[str] | None = None) -> int:
    args = validate_parser().parse_args(argv)
    prog = "a2mamba-validate"
    try:
        from .checkpoint_eval import evaluate_checkpoint

        stats = evaluate_checkpoint(args)
    except (ConfigError, FashionMNISTMissing) as err:
        return _fail(prog, str(err))
    except DataError as err:
        return _fail(prog, _worker_message(err))
    print(
        f"{stats['model']}: top-1 {stats['top1']:.3f}%  top-5 {stats['top5']:.3f}%  loss {stats['loss']:.4f}  "
        f"({stats['count']} images, {stats['img_size']} px, crop_pct {stats['crop_pct']}, "
        f"{stats['interpolation']})"
    )
    weakest = sorted((top1, name) for name, top1 in stats["class_top1"].items() if top1 is not None)[:5]
    if len(stats["class_top1"]) > 1 and weakest:
        print("weakest classes (top-1): " + ", ".join(f"{name} {top1:.1f}%" for top1, name in weakest))
    if args.results_file:
        Path(args.results_file).write_text(json.dumps(stats, indent=2) + "\n")
    return 0
