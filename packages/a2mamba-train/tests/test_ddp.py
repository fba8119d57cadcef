"""Two CPU processes (torchrun, gloo) train the same model as one process with the same global batch.

What is compared must not depend on the CPU. Under AdamW a parameter whose true gradient is zero
(the key part of a ViT's qkv bias: softmax is shift-invariant) still moves by about +-lr per step,
because Adam normalises the rounding noise of its gradient; that noise depends on the summation
order, so such weights differ between machines, not because of DDP. Plain SGD with momentum is
linear in the gradient: rounding noise stays rounding noise, and a wrong reduction (gradients
summed instead of averaged, or one rank's shard dropped) moves every weight visibly. The test
proves that by running two deliberately broken reductions (ddp_faults.py) and requiring the same
comparison to fail for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder, read_rows, single_thread_env

HERE = Path(__file__).resolve().parent

# test_vit has no BatchNorm: with per-rank batch statistics (no SyncBatchNorm on CPUs) a BN model
# would differ between 1 and 2 processes by design, so the comparison uses a LayerNorm model.
# No warm-up and no gradient clipping: every step's update is the full lr times the gradient, so a
# wrong gradient shows in the weights.
DDP_RUN = [
    "--model",
    "test_vit",
    "--img-size",
    "32",
    "--epochs",
    "2",
    "--warmup-epochs",
    "0",
    "--cooldown-epochs",
    "0",
    "--opt",
    "momentum",
    "--lr",
    "0.05",
    "--clip-grad",
    "none",
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
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _train(command: list[str], data: Path, output: Path, batch_size: int) -> Path:
    args = [*DDP_RUN, "--batch-size", str(batch_size), "--data-dir", str(data), "--output", str(output)]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=single_thread_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def assert_same_training(single: Path, double: Path) -> None:
    """The two-process run took the same steps as the one-process run: same weights, same metrics."""
    expected = torch.load(single / "last.pth", weights_only=True)
    actual = torch.load(double / "last.pth", weights_only=True)
    assert expected["step"] == actual["step"] == 2 * 4
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(actual["model"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    # only rank 0 writes: one row per epoch; metrics are reduced over both ranks (all 12 images)
    assert [r["epoch"] for r in read_rows(double, "epoch")] == [1, 2]
    for a, b in zip(read_rows(single, "epoch"), read_rows(double, "epoch"), strict=True):
        assert a["top1"] == b["top1"]
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("ddp") / "data", train_per_class=16, val_per_class=6)


@pytest.fixture(scope="module")
def single_run(data, tmp_path_factory) -> Path:
    return _train([sys.executable, "-m", "a2mamba_train"], data, tmp_path_factory.mktemp("single") / "run", 8)


def test_two_gloo_processes_match_one_process(data, single_run, tmp_path):
    double = _train([*TORCHRUN, "-m", "a2mamba_train"], data, tmp_path / "ddp", 4)
    config = json.loads((double / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 8
    assert_same_training(single_run, double)


@pytest.mark.parametrize("fault", ["sum", "rank0"])
def test_comparison_catches_a_wrong_gradient_reduction(fault, data, single_run, tmp_path):
    broken = _train([*TORCHRUN, str(HERE / "ddp_faults.py"), fault], data, tmp_path / fault, 4)
    with pytest.raises(AssertionError):
        assert_same_training(single_run, broken)
