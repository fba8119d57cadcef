"""GPU timing helpers: event-timed calls, the card's copy bandwidth, peak memory.

An op's achieved GB/s only means something next to what the card can move at
all, so the copy bandwidth is measured in the same process, right before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_COPY_BYTES = 1 << 30  # 1 GiB: far beyond any cache, short enough to time in milliseconds
_copy_gbps_cache: dict[str, float] = {}


def timed_seconds(fn: Callable[[], object], device: str = "cuda", repeats: int = 20) -> float:
    """Median seconds of one `fn()` call after a warm-up: CUDA events on `cuda`, a
    wall clock on `cpu` (the CPU path exists so the GPU tools can be smoke-tested
    on a machine without a GPU)."""
    import torch

    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    fn()
    times = []
    if device == "cpu":
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    else:
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth_gbps(device: str = "cuda") -> float:
    """Copy GB/s on `device` (bytes read + bytes written), measured once per process and device."""
    if device not in _copy_gbps_cache:
        import torch

        src = torch.empty(_COPY_BYTES, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        seconds = timed_seconds(lambda: dst.copy_(src), device=device, repeats=20 if device == "cuda" else 3)
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
