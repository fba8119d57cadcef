from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# The tests train tiny models on tiny batches: one thread is faster than two (thread start-up and
# synchronisation dominate), and on a busy CI machine far faster.
torch.set_num_threads(1)


def single_thread_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


# Small settings shared by the tests that really train: a2mamba_test on 32x32 images.
SMALL_RUN = [
    "--model",
    "a2mamba_test",
    "--img-size",
    "32",
    "--batch-size",
    "8",
    "--epochs",
    "2",
    "--warmup-epochs",
    "1",
    "--cooldown-epochs",
    "0",
    "--lr",
    "1e-3",
    "--no-progress",
    "--device",
    "cpu",
]


def make_image_folder(
    root: Path, classes=("circle", "square"), train_per_class=16, val_per_class=8, size=32, seed=0
) -> Path:
    """An ImageNet-style folder (train/<class>/*.png, val/<class>/*.png) of learnable toy images:
    each class is a different brightness pattern with noise."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = np.zeros((size, size, 3), dtype=np.float32)
                if index % 2 == 0:
                    base[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 200
                else:
                    base[:, : size // 2] = 200
                pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def read_rows(run: Path, kind: str) -> list[dict]:
    """The rows of one kind ("epoch", "step", ...) of a run's metrics.jsonl, in order."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data")


def save_training_checkpoint(
    path: Path, model: str = "a2mamba_test", classes=("circle", "square"), img_size: int = 32, seed: int = 0
) -> dict:
    """A checkpoint laid out as a2mamba-train writes one (model weights and what the run knew), without
    training: the tests that read checkpoints need its format, not a trained model."""
    import timm

    import a2mamba_models  # noqa: F401 - registers the A2Mamba models with timm

    torch.manual_seed(seed)
    net = timm.create_model(model, num_classes=len(classes), image_size=img_size)
    state = {
        "format": "a2mamba-train/1",
        "arch": model,
        "num_classes": len(classes),
        "class_names": list(classes),
        "model": net.state_dict(),
        "config": {"model": model, "img_size": img_size},
        "data_config": {"crop_pct": 1.0, "interpolation": "bicubic"},
    }
    torch.save(state, path)
    return state


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 300, module: str = "a2mamba_train", cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args`` in a fresh process (as a user would), capturing its output."""
    full_env = single_thread_env()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd
    )
