"""The reports' plot: one horizontal bar per case against its target (matplotlib, optional)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save(path: Path, labels: Sequence[str], values: Sequence[float], targets: Sequence[float], xlabel: str, title: str):
    """Bars green where the value reaches its target, red where not, the target marked; False
    without matplotlib or without a bar to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not values:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(values) + 1.3))
    y = list(range(len(values)))
    colours = ["tab:green" if v >= t else "tab:red" for v, t in zip(values, targets, strict=True)]
    ax.barh(y, list(values), color=colours)
    ax.scatter(list(targets), y, marker="|", s=200, color="black", label="target")
    ax.set_yticks(y, list(labels), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{xlabel} (green: target met)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
