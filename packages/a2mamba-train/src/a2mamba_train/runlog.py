"""The run folder's logs: the JSON-lines metrics log and optional TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
CURVES = "curves.png"


class RunLog:
    """Rank 0's writer; every record is one JSON line with a ``kind`` ("epoch", "event", "final")."""

    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.run_dir = run_dir
        self.path = run_dir / METRICS
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("note: --tensorboard needs the tensorboard package (pip install tensorboard); skipping it")
            else:
                self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def record(self, kind: str, **values: Any) -> None:
        row = {"kind": kind, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as stream:
            stream.write(json.dumps(row) + "\n")
        if self.writer is not None and kind == "epoch":
            for key, value in values.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(key, value, values["epoch"])
            self.writer.flush()

    def epochs(self) -> list[dict[str, Any]]:
        """The latest row per epoch (a resumed run logs the epochs it redoes again)."""
        latest: dict[int, dict[str, Any]] = {}
        for row in read_metrics(self.path):
            if row.get("kind") == "epoch":
                latest[row["epoch"]] = row
        return [latest[e] for e in sorted(latest)]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows
