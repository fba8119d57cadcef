"""`a2mamba-models` command line: `info <name> [--img-size H W] [--json]`, `list`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import timm
import torch

from .flops import count_flops, count_params
from .variants import CROP_PCT, PUBLISHED, VARIANT_ARGS


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="a2mamba-models", description="A2Mamba model information")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="parameters and FLOPs of a model")
    p_info.add_argument("name", choices=sorted(VARIANT_ARGS), help="model name")
    p_info.add_argument("--img-size", nargs=2, type=int, metavar=("H", "W"), default=(224, 224))
    p_info.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    sub.add_parser("list", help="list the registered models")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in sorted(VARIANT_ARGS):
            print(name + ("" if name in PUBLISHED else "  (test-only)"))
        return 0
    H, W = args.img_size
    if H < 32 or W < 32:
        parser.error(f"--img-size must be at least 32 32 (one pixel at stride 32), got {H} {W}")
    result = info(args.name, (H, W))
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


if __name__ == "__main__":
    sys.exit(main())
