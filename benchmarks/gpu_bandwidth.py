"""GPU timing helpers: event-timed calls, the card's copy bandwidth, peak memory.

An op's achieved GB/s only means something next to what the card can move at
all, so the copy bandwidth is measured in the same process, right before.
"""

from __future__ import annotations

from collections.abc import Callable

_COPY_BYTES = 1 << 30  # 1 GiB: far beyond any cache, short enough to time in milliseconds
_copy_gbps_cache: float | None = None


def timed_seconds(fn: Callable[[], object], device: str = "cuda", repeats: int = 20) -> float:
    """Median seconds of one `fn()` call, timed with CUDA events after a warm-up."""
    import torch

    if device != "cuda":
        raise ValueError(f"device must be 'cuda', got {device!r}")
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth_gbps() -> float:
    """Device-to-device copy GB/s (bytes read + bytes written), measured once per process."""
    global _copy_gbps_cache
    if _copy_gbps_cache is None:
        import torch

        src = torch.empty(_COPY_BYTES, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        seconds = timed_seconds(lambda: dst.copy_(src))
        _copy_gbps_cache = 2 * _COPY_BYTES / seconds / 1e9
        del src, dst
        torch.cuda.empty_cache()
    return _copy_gbps_cache


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Peak GPU memory allocated while `fn()` runs, in MiB (inputs included)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20
