"""A non-finite loss is caught at once: the step is skipped, logged, and the run recovers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from conftest import SMALL_RUN
from timm.models import register_model
from torch import nn

from a2mamba_train.cli import train_main


class ProbeNet(nn.Module):
    """A small conv net with two ways to produce a non-finite loss on purpose."""

    poison_calls: set[int] = set()  # training forward calls (counted from 0) that return NaN
    calls = 0

    def __init__(self, num_classes: int = 2, overflow_in_half: bool = False, **_):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.head = nn.Linear(8, num_classes)
        self.overflow_in_half = overflow_in_half

    def forward(self, x):
        features = self.conv(x).mean((2, 3))
        if self.overflow_in_half:
            # exact in float32; overflows to inf when autocast runs the conv in float16
            features = features * 1e5 / 1e5
        logits = self.head(features)
        if self.training:
            if ProbeNet.calls in ProbeNet.poison_calls:
                logits = logits * float("nan")
            ProbeNet.calls += 1
        return logits


@register_model
def probe_overflow_half(pretrained=False, num_classes=2, **kwargs):
    return ProbeNet(num_classes, overflow_in_half=True)


@register_model
def probe_poisoned(pretrained=False, num_classes=2, **kwargs):
    return ProbeNet(num_classes)


def events(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "event"]


def probe_args(image_folder: Path, run: Path, model: str, *extra: str) -> list[str]:
    args = [*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(run), "--nonfinite-patience", "2", *extra]
    args[args.index("a2mamba_test")] = model
    return args


def test_float16_overflow_falls_back_to_float32_and_finishes(image_folder, tmp_path, capsys):
    ProbeNet.poison_calls, ProbeNet.calls = set(), 0
    run = tmp_path / "run"
    code = train_main(probe_args(image_folder, run, "probe_overflow_half", "--amp", "float16"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "continuing in float32" in captured.out
    logged = events(run)
    assert [e["action"] for e in logged] == ["skip", "disable_amp"]
    assert all(e["event"] == "nonfinite_loss" and e["amp"] == "float16" for e in logged)
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["amp"] == "off"  # a resumed run stays in float32
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs[0]["skipped_steps"] == 2 and epochs[1]["skipped_steps"] == 0
    assert all(math.isfinite(r["train_loss"]) for r in epochs)


def test_float32_nan_restores_the_last_good_checkpoint(image_folder, tmp_path, capsys):
    # 4 steps per epoch: the 2nd epoch's first two forward calls give NaN
    ProbeNet.poison_calls, ProbeNet.calls = {4, 5}, 0
    run = tmp_path / "run"
    code = train_main(probe_args(image_folder, run, "probe_poisoned", "--amp", "off", "--epochs", "3"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "restoring the last good checkpoint" in captured.out
    assert [e["action"] for e in events(run)] == ["skip", "restore"]
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["epoch"] == 3 and state["nonfinite"]["restores"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_persistent_nan_without_a_checkpoint_stops_with_advice(image_folder, tmp_path, capsys):
    ProbeNet.poison_calls, ProbeNet.calls = set(range(100)), 0
    code = train_main(probe_args(image_folder, tmp_path / "run", "probe_poisoned", "--amp", "off"))
    err = capsys.readouterr().err
    assert code == 3
    assert "non-finite" in err and "lower --lr" in err
