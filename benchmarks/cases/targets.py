"""The CPU speed targets: what is compared with what, at which sizes, and the threshold.

Each target is a ratio of two rates measured side by side in one process:
neighbourhood attention's GFLOP/s over an fp32 matmul's, the scan's GB/s over
a copy's of the same bytes, a model's img/s over resnet50's. A `Contender` is
a ready call plus the work one call does, so a rate is `work / median time`.
Used by `tools/cpu_targets.py` (the report) and the asv suite `targets`
(the history).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models import IMG_SIZE, Setting, create_model, inference_step, train_step
from .ops import make_attention_case, make_case
from .shapes import NA2DShape, ScanShape
from .timing import Timing, measure_side_by_side

ATTENTION = {"forward": 0.25, "forward_backward": 0.12}  # of the fp32 matmul FLOP rate
SCAN = 0.10  # of the rate of a copy moving the same bytes
INFERENCE = {"a2mamba_n": 2.0, "a2mamba_t": 1.0}  # x resnet50's img/s, batch 8
TRAINING = {"a2mamba_n": 2.0}  # x resnet50's img/s, batch 16
BASELINE = "resnet50"
INFERENCE_BATCH = 8
TRAINING_BATCH = 16
MATMUL_N = 1024  # 2.1 GFLOP: tens of milliseconds on two cores, far from any cache effect
THREADS = 2


@dataclass(frozen=True)
class Contender:
    run: Callable[[], object]
    work: float  # per call, in the unit's numerator: GFLOP, GB or images
    unit: str  # "GFLOP/s", "GB/s" or "img/s"

    def rate(self, timing: Timing) -> float:
        return self.work / timing.median


def matmul(n: int = MATMUL_N) -> Contender:
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    return Contender(lambda: torch.mm(a, b, out=c), 2 * n**3 / 1e9, "GFLOP/s")


def attention(shape: NA2DShape, mode: str, backend: str) -> Contender:
    case = make_attention_case(shape, mode, backend)
    return Contender(case.run, case.flops / 1e9, "GFLOP/s")


def scan_and_copy(shape: ScanShape, backend: str) -> tuple[Contender, Contender]:
    """The scan forward, and a copy of a buffer half its bytes (a copy reads and writes each byte)."""
    case = make_case("scan", shape, "forward", backend)
    src = torch.empty(case.bytes_moved // 2, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy = Contender(lambda: dst.copy_(src), 2 * src.numel() / 1e9, "GB/s")
    return Contender(case.run, case.bytes_moved / 1e9, "GB/s"), copy


def model(name: str, kind: str, batch: int, img_size: int = IMG_SIZE) -> Contender:
    """A CPU inference or training step of `name` (kind 'inference' or 'training')."""
    make_step = {"inference": inference_step, "training": train_step}[kind]
    setting = Setting("cpu", batch, amp=False)
    step = make_step(create_model(name, setting, allowed_on_cpu=[name]), setting, img_size=img_size)
    return Contender(step, batch, "img/s")


def with_batch(shape, batch: int):
    return dataclasses.replace(shape, batch=batch)


def side_by_side_ratio(contender: Contender, baseline: Contender, rounds: int) -> float:
    """contender's rate / baseline's rate, their rounds interleaved."""
    timings = measure_side_by_side({"contender": contender.run, "baseline": baseline.run}, rounds)
    return contender.rate(timings["contender"]) / baseline.rate(timings["baseline"])
