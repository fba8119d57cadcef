"""Real (tiny) training runs: the run folder, the validation CLI, and resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import SMALL_RUN, make_image_folder, read_rows, single_thread_env

from a2mamba_train.cli import train_main, validate_main


def test_run_folder_holds_config_metrics_checkpoints_and_curves(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    code = train_main(
        [
            *SMALL_RUN,
            "--data-dir",
            str(image_folder),
            "--output",
            str(run),
            "--keep-best",
            "1",
            "--model-ema",
            "--model-ema-decay",
            "0.9",
            "--distill-weight",
            "0.5",
            "--distill-start-epoch",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "final validation accuracy" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "a2mamba_test" and config["num_classes"] == 2 and config["world_size"] == 1
    epochs = read_rows(run, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["top1"] <= 100 and r["train_loss"] > 0 and "ema_top1" in r for r in epochs)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "pre-distill.pth").is_file()  # snapshot just before self-distillation starts
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 2 * 4
    assert {"model", "model_ema", "optimizer", "scaler", "scheduler", "rng"} <= set(state)
    assert len(list(run.glob("best-*.pth"))) == 1
    assert not list(run.glob(".*.tmp"))  # no leftovers of atomic writes

    # a2mamba-validate on the same checkpoint reproduces the trainer's last evaluation
    results = tmp_path / "results.json"
    assert (
        validate_main(
            [
                "--model",
                "a2mamba_test",
                "--checkpoint",
                str(run / "last.pth"),
                "--img-size",
                "32",
                "--results-file",
                str(results),
                str(image_folder),
            ]
        )
        == 0
    )
    assert "top-1" in capsys.readouterr().out
    stats = json.loads(results.read_text())
    assert stats["count"] == 16 and stats["crop_pct"] == 1.0 and stats["interpolation"] == "bicubic"
    assert stats["top1"] == pytest.approx(epochs[-1]["top1"])
    assert stats["loss"] == pytest.approx(epochs[-1]["eval_loss"], rel=1e-5)


RESUME_RUN = [
    "--model",
    "a2mamba_test",
    "--img-size",
    "32",
    "--batch-size",
    "8",
    "--epochs",
    "3",
    "--warmup-epochs",
    "1",
    "--cooldown-epochs",
    "1",
    "--lr",
    "2e-3",
    "--model-ema",
    "--model-ema-decay",
    "0.9",
    "--workers",
    "1",
    "--deterministic",
    "--no-progress",
    "--device",
    "cpu",
    "--amp",
    "off",
    # the published augmentation stack, Mixup/CutMix included, so every RNG stream is exercised
]


def _launch(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "a2mamba_train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=single_thread_env(),
    )


def _tensors_equal(a, b, where: str = "") -> None:
    if torch.is_tensor(a):
        assert torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _tensors_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _tensors_equal(x, y, f"{where}[{i}]")


def test_killed_run_resumes_to_bit_identical_weights(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=48, val_per_class=4)
    reference_run, killed_run = tmp_path / "reference", tmp_path / "killed"
    reference = _launch(*RESUME_RUN, "--data-dir", str(data), "--output", str(reference_run))

    victim = _launch(*RESUME_RUN, "--data-dir", str(data), "--output", str(killed_run))
    deadline = time.time() + 600
    while not (killed_run / "last.pth").exists():  # kill it inside the second epoch
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert torch.load(killed_run / "last.pth", weights_only=True)["epoch"] < 4, "the kill came too late"

    # resuming needs only the run folder: the settings come from the checkpoint
    resumed = subprocess.run(
        [sys.executable, "-m", "a2mamba_train", "--resume", "auto", "--output", str(killed_run)],
        capture_output=True,
        text=True,
        timeout=600,
        env=single_thread_env(),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout

    assert reference.wait(timeout=600) == 0, reference.stdout.read()
    expected = torch.load(reference_run / "last.pth", weights_only=True)
    actual = torch.load(killed_run / "last.pth", weights_only=True)
    assert actual["epoch"] == expected["epoch"] == 4 and actual["step"] == expected["step"]  # 3 + 1 cooldown
    for part in ("model", "model_ema", "optimizer"):
        _tensors_equal(expected[part], actual[part], part)
    assert read_rows(killed_run, "epoch")[-1]["top1"] == read_rows(reference_run, "epoch")[-1]["top1"]
