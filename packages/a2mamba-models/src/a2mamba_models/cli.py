"""`a2mamba-models` command line: `info`, `list`, `export`, `convert`, `--version`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import timm
import torch

from ._version import __version__
from .flops import count_flops, count_params
from .variants import CROP_PCT, PUBLISHED, VARIANT_ARGS

PROG = "a2mamba-models"


class UserError(Exception):
    """A mistake in the command line or its files: reported as one line, exit status 2."""


def _build_meta(name: str):
    # On the meta device no weights are allocated or initialised: instant even for a2mamba_l.
    with torch.device("meta"):
        return timm.create_model(name)


def info(name: str, img_size: tuple[int, int]) -> dict:
    model = _build_meta(name)
    report = count_flops(model, img_size)
    args = VARIANT_ARGS[name]
    stages = [
        dict(
            stage=i + 1,
            dim=args["embed_dims"][i],
            depth=args["depths"][i],
            heads=args["num_heads"][i],
            window=args["window_size"][i],
            stride=4 * 2**i,
        )
        for i in range(4)
    ]
    return dict(
        model=name,
        published=name in PUBLISHED,
        img_size=list(img_size),
        params=count_params(model),
        flops=report.total,
        gflops=round(report.total / 1e9, 3),
        test_crop_pct=CROP_PCT.get(name),
        stages=stages,
    )


def _print_table(result: dict) -> None:
    rows = [
        ("model", result["model"] + ("" if result["published"] else "  (test-only, not a published model)")),
        ("input", "{} x {}".format(*result["img_size"])),
        ("params", f"{result['params']:,}  ({result['params'] / 1e6:.2f} M)"),
        ("FLOPs", f"{result['gflops']:.3f} G  (fvcore convention: one multiply-add = one FLOP)"),
    ]
    if result["test_crop_pct"] is not None:
        rows.append(("test crop", f"{result['test_crop_pct']}"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print()
    print(f"{'stage':>5} {'dim':>5} {'depth':>5} {'heads':>5} {'window':>6} {'stride':>6}")
    for s in result["stages"]:
        print(f"{s['stage']:>5} {s['dim']:>5} {s['depth']:>5} {s['heads']:>5} {s['window']:>6} {s['stride']:>6}")


def _img_size(parser: argparse.ArgumentParser, value) -> tuple[int, int]:
    H, W = value
    if H < 32 or W < 32:
        parser.error(f"--img-size must be at least 32 32 (one pixel at stride 32), got {H} {W}")
    return H, W


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="A2Mamba models: information, export, conversion")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="parameters and FLOPs of a model")
    p_info.add_argument("name", choices=sorted(VARIANT_ARGS), help="model name")
    p_info.add_argument("--img-size", nargs=2, type=int, metavar=("H", "W"), default=(224, 224))
    p_info.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    sub.add_parser("list", help="list the registered models")

    p_export = sub.add_parser("export", help="write a model as ONNX or as a torch.export program (.pt2)")
    p_export.add_argument("name", choices=sorted(VARIANT_ARGS), help="model name")
    p_export.add_argument("--format", choices=("onnx", "pt2"), default="onnx", help="output format (default onnx)")
    p_export.add_argument(
        "--img-size", nargs=2, type=int, metavar=("H", "W"), help="input size (default: the model's, 224 224)"
    )
    p_export.add_argument(
        "--checkpoint", metavar="FILE", help="weights to export (.pth/.pt/.safetensors); default: random weights"
    )
    p_export.add_argument("-o", "--output", metavar="PATH", help="output file (default: NAME.onnx / NAME.pt2)")

    p_convert = sub.add_parser("convert", help="re-save a checkpoint's weights as safetensors")
    p_convert.add_argument("input", metavar="IN", help="checkpoint (.pth/.pt, a state dict or a training checkpoint)")
    p_convert.add_argument("output", metavar="OUT", help="output file (.safetensors)")
    p_convert.add_argument("--use-ema", action="store_true", help="take the EMA weights when the file holds them")
    return parser


def _print_info(args) -> int:
    result = info(args.name, args.img_size)
    try:
        if args.json:
            json.dump(result, sys.stdout, indent=2)
            print()
        else:
            _print_table(result)
        sys.stdout.flush()
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _export(args) -> int:
    from .export import export_onnx, export_pt2, onnxruntime_difference
    from .saving import model_for_checkpoint

    output = Path(args.output or f"{args.name}.{args.format}")
    if not output.parent.is_dir():
        raise UserError(f"--output: folder {output.parent} does not exist")
    img_size = args.img_size or timm.get_pretrained_cfg_value(args.name, "input_size")[1:]
    if args.checkpoint:
        model = model_for_checkpoint(args.name, args.checkpoint, img_size=img_size)
    else:
        print(f"{PROG}: no --checkpoint given: exporting randomly initialised weights", file=sys.stderr)
        model = timm.create_model(args.name, img_size=img_size)
    if args.format == "onnx":
        export_onnx(model, output, img_size)
        difference = onnxruntime_difference(model, output, img_size)
        if difference is not None:
            print(f"onnxruntime vs PyTorch: max |difference| = {difference:.1e} of the largest logit")
    else:
        export_pt2(model, output, img_size)
    print(f"wrote {output} ({args.name}, input (batch, {model.in_chans}, {img_size[0]}, {img_size[1]}), batch dynamic)")
    return 0


def _convert(args) -> int:
    from .saving import convert_to_safetensors

    written = convert_to_safetensors(args.input, args.output, use_ema=args.use_ema)
    print(f"wrote {args.output} ({written} tensors)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .pretrained import CheckpointMismatch

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in sorted(VARIANT_ARGS):
            print(name + ("" if name in PUBLISHED else "  (test-only)"))
        return 0
    if getattr(args, "img_size", None) is not None:
        args.img_size = _img_size(parser, args.img_size)
    commands = {"info": _print_info, "export": _export, "convert": _convert}
    try:
        return commands[args.command](args)
    except (UserError, CheckpointMismatch, FileNotFoundError) as e:
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
