"""ONNX export of every published variant checked in onnxruntime, and a2mamba_n's CPU latency in both runtimes.

    python -m benchmarks.tools.export_check --out DIR [--variants a2mamba_n,...] [--img-size 224] [--rounds 10]

For each variant (weights from a fixed seed; no download): `a2mamba_models.export.export_onnx`
(plain `torch.onnx.export(dynamo=True)`, dynamic batch), then onnxruntime against PyTorch eager on
random batches of 1 and 3 images: max |difference| over max |PyTorch logit|, which must stay within
1e-4. Then a2mamba_n at batch 1 and 8: both runtimes, the same threads (torch's intra-op count) and
the same number of interleaved rounds (`benchmarks.cases.timing`), medians with quartiles. Writes
export-<machine>.json and .md to --out after every step, so a run cut short keeps what it measured.
Exit status 1 when an export fails or misses the tolerance, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks.cases import machine
from benchmarks.cases.models import A2MAMBA_VARIANTS
from benchmarks.cases.timing import measure_side_by_side

TOLERANCE = 1e-4
LATENCY_MODEL = "a2mamba_n"
LATENCY_BATCHES = (1, 8)
DIFFERENCE_BATCHES = (1, 3)


def create(name: str):
    import timm

    import a2mamba_models  # noqa: F401  (registers the models)

    torch.manual_seed(0)
    return timm.create_model(name).eval()


def ort_session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_variant(name: str, folder: Path, img_size: tuple[int, int]) -> dict:
    from a2mamba_models.export import export_onnx, onnxruntime_difference

    model = create(name)
    path = folder / f"{name}.onnx"
    start = time.perf_counter()
    export_onnx(model, path, img_size)
    row = {"variant": name, "export_s": round(time.perf_counter() - start, 1), "file_mib": path.stat().st_size / 2**20}
    for batch in DIFFERENCE_BATCHES:
        row[f"difference_batch{batch}"] = onnxruntime_difference(model, path, img_size, batch)
    row["ok"] = all(row[f"difference_batch{b}"] <= TOLERANCE for b in DIFFERENCE_BATCHES)
    return row


def latency(path: Path, img_size: tuple[int, int], rounds: int) -> list[dict]:
    model = create(LATENCY_MODEL)
    session = ort_session(path)
    rows = []
    for batch in LATENCY_BATCHES:
        x = torch.randn(batch, 3, *img_size)
        feed = {session.get_inputs()[0].name: x.numpy()}

        def pytorch(x=x):
            with torch.inference_mode():
                model(x)

        def onnxruntime(feed=feed):
            session.run(None, feed)

        timings = measure_side_by_side({"pytorch": pytorch, "onnxruntime": onnxruntime}, rounds, warmup=2)
        for runtime, timing in timings.items():
            rows.append({"runtime": runtime, "batch": batch, **timing.as_dict()})
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"# ONNX export ({report['img_size'][0]}x{report['img_size'][1]}, onnxruntime CPU)",
        "",
        machine.one_line(report["machine"]),
        "",
        f"Difference: max |onnxruntime - PyTorch| / max |PyTorch logit|, tolerance {TOLERANCE:.0e}.",
        "",
        "| variant | export s | file MiB | difference batch 1 | difference batch 3 | ok |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["variants"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | failed: {row['error']} | | | | no |")
            continue
        lines.append(
            f"| {row['variant']} | {row['export_s']:.0f} | {row['file_mib']:.1f} | {row['difference_batch1']:.1e} "
            f"| {row['difference_batch3']:.1e} | {'yes' if row['ok'] else 'NO'} |"
        )
    if report["latency"]:
        lines += [
            "",
            f"## {LATENCY_MODEL} latency, {report['threads']} threads, {report['rounds']} interleaved rounds each",
            "",
            "| batch | runtime | median ms | quartiles ms | onnxruntime speed-up |",
            "|---:|---|---:|---|---:|",
        ]
        medians = {(r["batch"], r["runtime"]): r["median_s"] for r in report["latency"]}
        for row in report["latency"]:
            speedup = medians[(row["batch"], "pytorch")] / medians[(row["batch"], "onnxruntime")]
            lines.append(
                f"| {row['batch']} | {row['runtime']} | {row['median_s'] * 1e3:.1f} "
                f"| {row['q1_s'] * 1e3:.1f}-{row['q3_s'] * 1e3:.1f} "
                f"| {f'{speedup:.2f}x' if row['runtime'] == 'onnxruntime' else ''} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.export_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for export-<machine>.json/.md")
    parser.add_argument("--variants", default=",".join(A2MAMBA_VARIANTS), help="comma-separated model names")
    parser.add_argument("--img-size", type=int, default=224, help="square input side (default 224)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per runtime (default 10; 0: no latency)")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(A2MAMBA_VARIANTS))
    if unknown:
        parser.error(f"--variants must name published variants {list(A2MAMBA_VARIANTS)}, got {unknown}")
    if args.img_size < 32 or args.img_size % 32 or args.rounds < 0:
        parser.error(
            f"--img-size must be a multiple of 32 (>= 32) and --rounds >= 0, got {args.img_size}, {args.rounds}"
        )
    args.label = machine.label_or_usage_error(parser)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    img_size = (args.img_size, args.img_size)
    report = {
        "label": args.label,
        "commit": machine.commit(),
        "machine": machine.describe(),
        "img_size": list(img_size),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "tolerance": TOLERANCE,
        "variants": [],
        "latency": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"export-{args.label}"

    def write() -> None:
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        stem.with_suffix(".md").write_text(markdown(report))

    failed = False
    with tempfile.TemporaryDirectory(prefix="a2mamba-export-check-") as tmp:
        folder = Path(tmp)
        for name in args.variants:
            print(f"export_check: exporting {name} at {img_size[0]}x{img_size[1]}", flush=True)
            try:
                row = check_variant(name, folder, img_size)
            except Exception as exc:  # one variant's failure must not hide the others' results
                traceback.print_exc()
                row = {"variant": name, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
            failed |= not row.get("ok", False)
            report["variants"].append(row)
            write()
            print(json.dumps(row), flush=True)
        onnx_file = folder / f"{LATENCY_MODEL}.onnx"
        if args.rounds and onnx_file.exists():
            print(f"export_check: {LATENCY_MODEL} latency, {args.rounds} rounds per runtime", flush=True)
            report["latency"] = latency(onnx_file, img_size, args.rounds)
            write()
    print(markdown(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
