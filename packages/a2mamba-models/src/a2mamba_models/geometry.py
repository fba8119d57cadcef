"""Window sizes and dilations of the two attention branches for a given feature map.

The reference derives branch 2's dilation from the map, `d2 = min(L // K, K)` per
axis, and needs `L >= K * d` on both axes (NATTEN's rule), so it only runs for
maps at least as large as the window. We keep that function unchanged wherever
it is defined and extend it to smaller maps:

- an axis shorter than the window `K` uses the largest odd window that fits
  (`L` or `L - 1`), with dilation 1;
- that smaller window reads the centre of the `(2K-1)`-wide bias table, i.e. the
  same relative offsets get the same bias as in the full window.

The two axes are treated independently (a 6x8 map with K = 7 attends through a
5x7 window), so an axis that is large enough behaves exactly as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class BranchWindows:
    """Per-axis `(rows, cols)` kernel and dilations of both branches."""

    kernel: tuple[int, int]
    dilation1: tuple[int, int]
    dilation2: tuple[int, int]
    full_kernel: int

    @property
    def shrunk(self) -> bool:
        return self.kernel != (self.full_kernel, self.full_kernel)


def _axis_window(length: int, kernel: int, dilation1: int) -> tuple[int, int, int]:
    k = kernel if length >= kernel else (length if length % 2 else length - 1)
    d1 = max(1, min(dilation1, length // k))
    d2 = min(length // k, k)
    return k, d1, d2


def branch_windows(H: int, W: int, kernel: int, dilation1: int = 1) -> BranchWindows:
    """Windows of branch 1 (configured dilation) and branch 2 (derived dilation) on an `H x W` map."""
    kh, d1h, d2h = _axis_window(H, kernel, dilation1)
    kw, d1w, d2w = _axis_window(W, kernel, dilation1)
    return BranchWindows(kernel=(kh, kw), dilation1=(d1h, d1w), dilation2=(d2h, d2w), full_kernel=kernel)


def crop_bias(rpb: Tensor, windows: BranchWindows) -> Tensor:
    """The centre of a `(heads, 2K-1, 2K-1)` bias table for a window shrunk to `(kh, kw)`."""
    if not windows.shrunk:
        return rpb
    K = windows.full_kernel
    kh, kw = windows.kernel
    return rpb[:, K - kh : K + kh - 1, K - kw : K + kw - 1]
