"""The run's curves (loss, accuracy, learning rate per epoch) as one PNG, redrawn every epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from .run_folder import atomic_write  # noqa: E402


def plot_curves(epochs: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Draw train/eval loss, top-1/top-5 and lr against the epoch; ``epochs`` are metrics-log rows."""
    x = [row["epoch"] for row in epochs]
    figure, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4))
    loss_ax.plot(x, [row.get("train_loss") for row in epochs], marker="o", label="train")
    loss_ax.plot(x, [row.get("eval_loss") for row in epochs], marker="o", label="eval")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    acc_ax.plot(x, [row.get("top1") for row in epochs], marker="o", label="top-1")
    acc_ax.plot(x, [row.get("top5") for row in epochs], marker="o", label="top-5")
    if any(row.get("ema_top1") is not None for row in epochs):
        acc_ax.plot(x, [row.get("ema_top1") for row in epochs], marker="o", label="EMA top-1")
    acc_ax.set(title="eval accuracy (%)", xlabel="epoch")
    acc_ax.legend()
    lr_ax.plot(x, [row.get("lr") for row in epochs], marker="o")
    lr_ax.set(title="learning rate (end of epoch)", xlabel="epoch")
    for axis in (loss_ax, acc_ax, lr_ax):
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=90))
    plt.close(figure)
