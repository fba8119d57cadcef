"""The op shapes an A2Mamba network actually runs at 224x224, batch 8.

Derived from the architecture (packages/a2mamba-models/docs/architecture.md):
stage maps are 56, 28 and 14 pixels wide with windows 11, 9 and 7; each of the
two neighbourhood-attention branches takes half the stage's heads; branch 1
runs dilation 1 and branch 2 dilation `min(H // K, K)` (5, 3 and 2). The SSM
scans the whole map (`L = H*W`) over all `C` channels with state size 1.

Only the nano and tiny widths are listed: the larger variants run the same
kernels with more heads, which scales time linearly and adds nothing to
compare. Shared by every benchmark tool so all of them measure the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH = 8


@dataclass(frozen=True)
class NA2DShape:
    """One neighbourhood-attention branch call: `(batch, heads, H, W, head_dim)` tensors."""

    name: str
    heads: int
    size: int
    head_dim: int
    kernel: int
    dilation: int
    batch: int = BATCH

    @property
    def qkv_shape(self) -> tuple[int, int, int, int, int]:
        return (self.batch, self.heads, self.size, self.size, self.head_dim)

    @property
    def attn_shape(self) -> tuple[int, int, int, int, int]:
        return (self.batch, self.heads, self.size, self.size, self.kernel * self.kernel)

    @property
    def rpb_shape(self) -> tuple[int, int, int]:
        return (self.heads, 2 * self.kernel - 1, 2 * self.kernel - 1)


@dataclass(frozen=True)
class ScanShape:
    """One selective-scan call: `u`, `delta` `(batch, dim, length)`, state size `state`."""

    name: str
    dim: int
    length: int
    state: int = 1
    batch: int = BATCH


def _branch_dilation(size: int, kernel: int) -> int:
    return min(size // kernel, kernel)


def _na2d(variant: str, stage: int, size: int, channels: int, heads: int, kernel: int) -> list[NA2DShape]:
    branch_heads = heads // 2
    head_dim = channels // heads
    shapes = []
    for dilation in (1, _branch_dilation(size, kernel)):
        name = f"{variant}-s{stage}-{size}px-h{branch_heads}x{head_dim}-k{kernel}-d{dilation}"
        shapes.append(NA2DShape(name, branch_heads, size, head_dim, kernel, dilation))
    return shapes


# (variant, stage, map size, channels, heads, window) for the local stages.
_LOCAL_STAGES = [
    ("n", 1, 56, 32, 2, 11),
    ("t", 1, 56, 48, 2, 11),
    ("n", 2, 28, 64, 2, 9),
    ("t", 2, 28, 96, 4, 9),
    ("n", 3, 14, 128, 4, 7),
    ("t", 3, 14, 256, 8, 7),
]

NA2D_SHAPES: list[NA2DShape] = [s for stage in _LOCAL_STAGES for s in _na2d(*stage)]

SCAN_SHAPES: list[ScanShape] = [
    ScanShape(f"s{stage}-L{size * size}-D{dim}", dim, size * size)
    for stage, size, dims in [(1, 56, (32, 48)), (2, 28, (64, 96)), (3, 14, (128, 256, 448))]
    for dim in dims
]

# The quick subset for asv's per-commit history: one NA branch per stage and
# the scan's extremes, so a commit costs a few minutes on two cores.
QUICK_NA2D = [s.name for s in NA2D_SHAPES if s.name.startswith("t-")]
QUICK_SCAN = ["s1-L3136-D48", "s2-L784-D96", "s3-L196-D448"]
# The plain-PyTorch reference takes seconds per call; asv times it at one shape
# per op only (pytest-benchmark times it everywhere, for the speed-up table).
REFERENCE_NA2D = "t-s2-28px-h2x24-k9-d1"
REFERENCE_SCAN = "s2-L784-D96"


# The shapes the CPU targets are stated at (`benchmarks/tools/cpu_targets.py`): one neighbourhood
# attention branch per local stage, and the scan at the first and last stage.
TARGET_NA2D: list[NA2DShape] = [
    NA2DShape("s1-56px-h1x16-k11-d1", heads=1, size=56, head_dim=16, kernel=11, dilation=1),
    NA2DShape("s2-28px-h2x16-k9-d3", heads=2, size=28, head_dim=16, kernel=9, dilation=3),
    NA2DShape("s3-14px-h2x32-k7-d2", heads=2, size=14, head_dim=32, kernel=7, dilation=2),
]
TARGET_SCAN: list[ScanShape] = [
    ScanShape("L3136-D32", dim=32, length=3136),
    ScanShape("L196-D128", dim=128, length=196),
]


def na2d_shape(name: str) -> NA2DShape:
    return _by_name(NA2D_SHAPES, name)


def scan_shape(name: str) -> ScanShape:
    return _by_name(SCAN_SHAPES, name)


def _by_name(shapes, name):
    for s in shapes:
        if s.name == name:
            return s
    raise KeyError(f"unknown shape {name!r}; known: {[s.name for s in shapes]}")
