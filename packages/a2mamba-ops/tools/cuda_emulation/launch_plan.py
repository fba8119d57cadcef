"""Launch configurations (threads per block, dynamic shared memory) of the CUDA kernels, in Python.

The launchers in csrc/cuda decide these; this module repeats their arithmetic so that the static
report can size shared memory and occupancy at A2Mamba's configurations without a GPU. The
emulation (check_kernels.py) compares every value here with what the C++ launch plan computes
for the same configuration, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import a2mamba_configs

NA_THREADS = 256
SCAN_THREADS = {"scan_fwd_kernel": 128, "scan_fwd_summary_kernel": 128, "scan_bwd_kernel": 256}
TILE = 8


def state_bytes(dtype: str) -> int:
    return 8 if dtype == "float64" else 4


def na_dynamic_smem(kind: str, dtype: str, kernel: tuple[int, int], dilation: tuple[int, int], head_dim: int) -> int:
    """Bytes of dynamic shared memory of the logits/aggregate/scatter kernels at one configuration."""
    size = state_bytes(dtype)
    chunk = 64 // size  # channels staged per pass
    kh, kw = kernel
    if kind == "logits":
        rect = (TILE + kh - 1) * (TILE + kw - 1)
        return (TILE * TILE * chunk + rect * (chunk + 1)) * size
    if kind == "aggregate":
        rect = (TILE + kh - 1) * (TILE + kw - 1)
        return (TILE * TILE * kh * kw + rect * (chunk + 1)) * size
    if kind == "scatter":
        rect = (TILE + 2 * kh - 2) * (TILE + 2 * kw - 2)
        return rect * (chunk + 16 // size) * size  # rows of 16-byte packs, 80 bytes apart
    raise ValueError(f"unknown na kernel kind {kind!r}")


def logits_slots(kernel: tuple[int, int]) -> int:
    return -(-kernel[0] * kernel[1] // 32)


def a2mamba_launches(base: str, dtype: str, name: str) -> list[dict]:
    """Every launch A2Mamba makes of kernel `base` (`name` carries template arguments)."""
    out = []
    if base.startswith("na_"):
        kind = base.removeprefix("na_").removesuffix("_kernel")
        slots = int(name.rsplit(",", 1)[1].strip(" >")) if kind == "logits" and "," in name else None
        for config in a2mamba_configs.na_uses():
            if slots is not None and logits_slots(config.kernel) != slots:
                continue
            smem = na_dynamic_smem(kind, dtype, config.kernel, config.dilation, config.head_dim)
            out.append({"config": config.label, "dynamic_smem": smem, "threads": NA_THREADS})
    elif base.startswith("scan_"):
        for config in a2mamba_configs.scan_uses():
            out.append(
                {"config": f"D{config.D} L{config.L} N{config.N}", "dynamic_smem": 0, "threads": SCAN_THREADS[base]}
            )
    return out
