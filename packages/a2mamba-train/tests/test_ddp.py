"""Two CPU processes (torchrun, gloo) train the same model as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import make_image_folder, single_thread_env

# test_vit has no BatchNorm: with per-rank batch statistics (no SyncBatchNorm on CPUs) a BN model
# would differ between 1 and 2 processes by design, so the comparison uses a LayerNorm model.
DDP_RUN = [
    "--model",
    "test_vit",
    "--img-size",
    "32",
    "--epochs",
    "2",
    "--warmup-epochs",
    "1",
    "--cooldown-epochs",
    "0",
    "--lr",
    "1e-3",
    "--no-aug",
    "--drop-path",
    "0",
    "--amp",
    "off",
    "--deterministic",
    "--workers",
    "0",
    "--no-progress",
    "--device",
    "cpu",
    "--smoothing",
    "0.1",
]


def test_two_gloo_processes_match_one_process(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=16, val_per_class=6)
    env = single_thread_env()
    single, double = tmp_path / "single", tmp_path / "ddp"
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "a2mamba_train",
            *DDP_RUN,
            "--batch-size",
            "8",
            "--data-dir",
            str(data),
            "--output",
            str(single),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "a2mamba_train",
            *DDP_RUN,
            "--batch-size",
            "4",
            "--data-dir",
            str(data),
            "--output",
            str(double),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]

    config = json.loads((double / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 8
    expected = torch.load(single / "last.pth", weights_only=True)
    actual = torch.load(double / "last.pth", weights_only=True)
    assert expected["step"] == actual["step"] == 2 * 4
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(actual["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)

    def epochs(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if r["kind"] == "epoch"]

    # only rank 0 writes: one row per epoch; metrics are reduced over both ranks (all 12 images)
    assert [r["epoch"] for r in epochs(double)] == [1, 2]
    for a, b in zip(epochs(single), epochs(double), strict=True):
        assert a["top1"] == b["top1"]
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
