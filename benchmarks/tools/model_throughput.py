"""Model throughput report: img/s of inference and a training step, and peak GPU memory, as plain JSON.

    python -m benchmarks.tools.model_throughput --out DIR [--device cuda] [--batch 128] [--amp] [--models a,b]

Every model runs the same warm-up and timed rounds (`benchmarks.cases.timing`;
img/s = batch / median step time, quartiles in the JSON). On `cuda` the models
run channels_last, and `--amp` under float16 autocast, as timm's benchmark does;
the peak allocated GPU memory of one step is recorded too. Writes
model_throughput.json and .md to --out after every model, so a run cut short
by a timeout keeps what it measured. This is the GPU half of the asv `models`
suite for machines without asv (`ci/gpu-check.sh`); `--device cpu` checks the
tool anywhere. Exit status 1 when a model failed (the others are measured), 2
on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import torch

from benchmarks.cases import machine
from benchmarks.cases.models import (
    A2MAMBA_VARIANTS,
    IMG_SIZE,
    REFERENCE_MODELS,
    Setting,
    create_model,
    inference_step,
    train_step,
)
from benchmarks.cases.timing import cuda_peak_mib, measure

KINDS = {"inference": inference_step, "training": train_step}


def measure_model(name: str, setting: Setting, rounds: int, warmup: int, img_size: int) -> dict:
    row: dict = {"model": name}
    for kind, make_step in KINDS.items():
        try:
            model = create_model(name, setting, allowed_on_cpu=[name])
            step = make_step(model, setting, img_size=img_size)
            timing = measure(step, rounds=rounds, warmup=warmup, device=setting.device)
            row[kind] = {
                "img_per_s": setting.batch / timing.median,
                "img_per_s_q1_q3": list(timing.rate_quartiles(setting.batch)),
                "timing": timing.as_dict(),
                "peak_cuda_mib": cuda_peak_mib(step) if setting.device == "cuda" else None,
            }
        except Exception:  # out of memory, a missing model: record it and go on
            row[kind] = {"error": traceback.format_exc(limit=3)}
        finally:
            model = step = None
            if setting.device == "cuda":
                torch.cuda.empty_cache()
    return row


def markdown(report: dict) -> str:
    lines = [
        f"# Model throughput on {report['device_name']}",
        "",
        f"- {machine.one_line(report['machine'])}; commit {report['commit'] or 'unknown'}",
        f"- batch {report['batch']}, {report['img_size']} px, {'float16 autocast' if report['amp'] else 'float32'}; "
        f"every model {report['rounds']} rounds after {report['warmup']} warm-up steps; img/s from the median step",
        "",
        "| model | inference img/s | training img/s | inference peak MiB | training peak MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["models"]:
        cells = [row["model"]]
        for field, fmt in (("img_per_s", "{:.1f}"), ("peak_cuda_mib", "{:.0f}")):
            for kind in KINDS:
                value = row[kind].get(field)
                cells.append("FAILED" if "error" in row[kind] else "—" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.model_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for model_throughput.json and .md")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--img-size", type=int, default=IMG_SIZE)
    parser.add_argument("--amp", action="store_true", help="float16 autocast (cuda)")
    parser.add_argument("--rounds", type=int, default=20, help="timed steps per model and kind (default 20)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10, timm's)")
    parser.add_argument("--models", default=",".join(A2MAMBA_VARIANTS + REFERENCE_MODELS), help="comma-separated")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        parser.error("--models must name at least one model")
    if min(args.batch, args.img_size, args.rounds) < 1 or args.warmup < 0:
        parser.error("--batch, --img-size and --rounds must be positive, --warmup 0 or more")
    if args.amp and args.device != "cuda":
        parser.error("--amp needs --device cuda")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("model_throughput: no CUDA device", file=sys.stderr)
        return 1
    setting = Setting(args.device, args.batch, args.amp)
    report = {
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
        "commit": machine.commit(),
        "machine": machine.describe(),
        "batch": args.batch,
        "img_size": args.img_size,
        "amp": args.amp,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "models": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        report["models"].append(measure_model(name, setting, args.rounds, args.warmup, args.img_size))
        (args.out / "model_throughput.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / "model_throughput.md").write_text(markdown(report))
        print(markdown(report).splitlines()[-1], flush=True)
    failed = [(row["model"], kind) for row in report["models"] for kind in KINDS if "error" in row[kind]]
    for name, kind in failed:
        print(f"FAILED {name} {kind}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
