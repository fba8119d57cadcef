"""The one timing helper of the benchmarks: every tool times calls and reduces samples here.

A figure is the median of a fixed number of rounds (one call each, after
warm-up calls), reported with its spread (quartiles, minimum and maximum).
Every contender of a comparison gets the same number of rounds, and
`measure_side_by_side` interleaves their rounds, so a burst of load from
another process on a shared machine hits all of them alike instead of one.

On `cuda` a call is timed with CUDA events; on `cpu` with the wall clock.
pytest-benchmark keeps its own loop (fixed rounds, see
`benchmarks/pytest_bench/`) but its raw samples are reduced by `Timing` too.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEVICES = ("cpu", "cuda")
ROUNDS_VARIABLE = "A2MAMBA_BENCH_ROUNDS"
DEFAULT_ROUNDS = 5

_COPY_BYTES = 1 << 30  # 1 GiB: far beyond any cache, short enough to time in milliseconds
_copy_gbps_cache: dict[str, float] = {}


def rounds_from_env(default: int = DEFAULT_ROUNDS) -> int:
    """Rounds per contender: `A2MAMBA_BENCH_ROUNDS`, else `default`."""
    text = os.environ.get(ROUNDS_VARIABLE, str(default))
    try:
        rounds = int(text)
    except ValueError:
        raise ValueError(f"{ROUNDS_VARIABLE} must be a positive integer, got {text!r}") from None
    if rounds < 1:
        raise ValueError(f"{ROUNDS_VARIABLE} must be a positive integer, got {rounds}")
    return rounds


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the rounds of one contender, in the order measured."""

    samples: tuple[float, ...]

    def __post_init__(self):
        if not self.samples:
            raise ValueError("a Timing needs at least one sample")

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        return cls(tuple(float(s) for s in samples))

    def quantile(self, q: float) -> float:
        """Linear interpolation between the sorted samples (numpy's default method)."""
        ordered = sorted(self.samples)
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def rounds(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return self.quantile(0.25)

    @property
    def q3(self) -> float:
        return self.quantile(0.75)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def rate_quartiles(self, work: float) -> tuple[float, float]:
        """The rates (work per second) at the upper and the lower time quartile: low, high."""
        return work / self.q3, work / self.q1

    def as_dict(self) -> dict:
        return {
            "rounds": self.rounds,
            "median_s": self.median,
            "q1_s": self.q1,
            "q3_s": self.q3,
            "min_s": self.min,
            "max_s": self.max,
            "samples_s": list(self.samples),
        }


def _check(device: str, rounds: int, warmup: int) -> None:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, got {warmup}")


def _time_one_call(fn: Callable[[], object], device: str) -> float:
    if device == "cpu":
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def measure_side_by_side(
    contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 1, device: str = "cpu"
) -> dict[str, Timing]:
    """Time every contender `rounds` times, round-robin, after `warmup` untimed calls of each."""
    _check(device, rounds, warmup)
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(_time_one_call(fn, device))
    return {name: Timing.of(values) for name, values in samples.items()}


def measure(fn: Callable[[], object], rounds: int, warmup: int = 1, device: str = "cpu") -> Timing:
    """`rounds` timed calls of `fn` after `warmup` untimed ones."""
    return measure_side_by_side({"fn": fn}, rounds, warmup, device)["fn"]


def copy_bandwidth_gbps(device: str = "cuda", rounds: int = 10) -> float:
    """Copy GB/s on `device` (bytes read + bytes written) of a buffer far beyond the caches,
    measured once per process and device."""
    if device not in _copy_gbps_cache:
        import torch

        src = torch.empty(_COPY_BYTES, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        seconds = measure(lambda: dst.copy_(src), rounds=rounds, device=device).median
        _copy_gbps_cache[device] = 2 * _COPY_BYTES / seconds / 1e9
        del src, dst
        if device == "cuda":
            torch.cuda.empty_cache()
    return _copy_gbps_cache[device]


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Peak GPU memory allocated while `fn()` runs, in MiB (inputs included)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20
