"""asv suite `targets`: the CPU speed targets' ratios, commit by commit.

Each benchmark measures one ratio side by side (`benchmarks.cases.targets`,
rounds interleaved, 2 torch threads): neighbourhood attention against the fp32
matmul FLOP rate, the scan against a copy of the same bytes, a model's img/s
against resnet50's. Higher is better, so `asv_compare` leaves them out; read
them in `asv publish`'s graphs. The one-run report with every target marked
met or missed is `python -m benchmarks.tools.cpu_targets`.
"""

from __future__ import annotations

from benchmarks.cases import targets
from benchmarks.cases.shapes import TARGET_NA2D, TARGET_SCAN

ROUNDS = 5


def _native_backend() -> str:
    import a2mamba_ops

    if "cpu" not in a2mamba_ops.available_backends():
        raise NotImplementedError("the native CPU backend is not built in this installation")
    return "cpu"


def _threads():
    import torch

    torch.set_num_threads(targets.THREADS)


def _by_name(shapes, name):
    return next(s for s in shapes if s.name == name)


class AttentionVsMatmul:
    params = ([s.name for s in TARGET_NA2D], list(targets.ATTENTION))
    param_names = ["shape", "mode"]
    timeout = 300

    def setup(self, shape, mode):
        _threads()
        self.attention = targets.attention(_by_name(TARGET_NA2D, shape), mode, _native_backend())
        self.matmul = targets.matmul()

    def track_fraction_of_matmul(self, shape, mode):
        return targets.side_by_side_ratio(self.attention, self.matmul, ROUNDS)

    track_fraction_of_matmul.unit = "of the fp32 matmul FLOP rate"


class ScanVsCopy:
    params = [s.name for s in TARGET_SCAN]
    param_names = ["shape"]
    timeout = 300

    def setup(self, shape):
        _threads()
        self.scan, self.copy = targets.scan_and_copy(_by_name(TARGET_SCAN, shape), _native_backend())

    def track_fraction_of_copy(self, shape):
        return targets.side_by_side_ratio(self.scan, self.copy, ROUNDS)

    track_fraction_of_copy.unit = "of the copy rate"


class ModelVsResnet50:
    params = (sorted(set(targets.INFERENCE) | set(targets.TRAINING)), ["inference", "training"])
    param_names = ["model", "kind"]
    timeout = 900

    def setup(self, model, kind):
        if model not in (targets.INFERENCE if kind == "inference" else targets.TRAINING):
            raise NotImplementedError(f"no {kind} target for {model}")
        _threads()
        batch = targets.INFERENCE_BATCH if kind == "inference" else targets.TRAINING_BATCH
        self.model = targets.model(model, kind, batch)
        self.baseline = targets.model(targets.BASELINE, kind, batch)

    def track_ratio_to_resnet50(self, model, kind):
        return targets.side_by_side_ratio(self.model, self.baseline, ROUNDS)

    track_ratio_to_resnet50.unit = "x resnet50's img/s"
