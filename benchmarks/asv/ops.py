"""asv suite `ops`: each op, forward and forward+backward, each backend present.

Shapes are the quick subset of `cases/shapes.py` (the tiny model's branches and
the scan's extremes; the slow plain-PyTorch reference at one shape per op,
the pytest-benchmark run in `pytest_bench/` covers it everywhere). A target is `device:backend`; targets that this
installation or machine lacks are skipped by raising NotImplementedError in
setup, asv's convention. On CUDA the suite also tracks achieved GB/s, its
fraction of the card's copy bandwidth measured in the same process, and the
peak allocated GPU memory.
"""

from __future__ import annotations

from benchmarks.cases.ops import MODES, make_case, require_target, synchronize
from benchmarks.cases.shapes import (
    QUICK_NA2D,
    QUICK_SCAN,
    REFERENCE_NA2D,
    REFERENCE_SCAN,
    na2d_shape,
    scan_shape,
)
from benchmarks.cases.timing import copy_bandwidth_gbps, cuda_peak_mib, measure

CPU_TARGETS = ["cpu:reference", "cpu:cpu"]
CUDA_TARGETS = ["cuda:reference", "cuda:cuda", "cuda:natten"]


class _OpBench:
    """Shared setup: build the case, run it once (warm-up: thread pools, lazy init)."""

    number = 1
    repeat = (2, 5, 8.0)  # (min samples, max samples, seconds budget): reference calls take up to ~5 s
    warmup_time = 0.0  # setup already ran the call once
    rounds = 1
    timeout = 300

    def _setup(self, op, shape, mode, target):
        self.device, backend = require_target(target)
        if backend == "reference" and self.device == "cpu" and shape.name not in (REFERENCE_NA2D, REFERENCE_SCAN):
            raise NotImplementedError(f"the reference is timed at {REFERENCE_NA2D} / {REFERENCE_SCAN} only")
        self.case = make_case(op, shape, mode, backend, self.device)
        self.case.run()
        synchronize(self.device)

    def _call(self):
        self.case.run()
        synchronize(self.device)


class NA2D(_OpBench):
    params = (["na2d_qk", "na2d_av"], QUICK_NA2D, list(MODES), CPU_TARGETS + CUDA_TARGETS)
    param_names = ["op", "shape", "mode", "target"]

    def setup(self, op, shape, mode, target):
        self._setup(op, na2d_shape(shape), mode, target)

    def time_call(self, op, shape, mode, target):
        self._call()

    def peakmem_call(self, op, shape, mode, target):
        self._call()


class Scan(_OpBench):
    params = (QUICK_SCAN, list(MODES), CPU_TARGETS + CUDA_TARGETS)
    param_names = ["shape", "mode", "target"]

    def setup(self, shape, mode, target):
        self._setup("scan", scan_shape(shape), mode, target)

    def time_call(self, shape, mode, target):
        self._call()

    def peakmem_call(self, shape, mode, target):
        self._call()


class _CudaTracks(_OpBench):
    """GPU-only tracked values; each times the call itself (track_ runs once)."""

    def _cuda_setup(self, op, shape, mode, target):
        self._setup(op, shape, mode, target)
        if self.device != "cuda":
            raise NotImplementedError("bandwidth and GPU memory are tracked on CUDA only")
        self.seconds = measure(self._call, rounds=20, device="cuda").median
        self.copy_gbps = copy_bandwidth_gbps()

    def _gbps(self):
        return self.case.bytes_moved / self.seconds / 1e9

    def _fraction(self):
        return self._gbps() / self.copy_gbps

    def _peak(self):
        return cuda_peak_mib(self._call)


class NA2DCuda(_CudaTracks):
    params = (["na2d_qk", "na2d_av"], QUICK_NA2D, list(MODES), CUDA_TARGETS)
    param_names = NA2D.param_names

    def setup(self, op, shape, mode, target):
        self._cuda_setup(op, na2d_shape(shape), mode, target)

    def track_gbps(self, op, shape, mode, target):
        return self._gbps()

    track_gbps.unit = "GB/s"

    def track_copy_fraction(self, op, shape, mode, target):
        return self._fraction()

    track_copy_fraction.unit = "of copy bandwidth"

    def track_peak_cuda_mib(self, op, shape, mode, target):
        return self._peak()

    track_peak_cuda_mib.unit = "MiB"


class ScanCuda(_CudaTracks):
    params = (QUICK_SCAN, list(MODES), CUDA_TARGETS)
    param_names = Scan.param_names

    def setup(self, shape, mode, target):
        self._cuda_setup("scan", scan_shape(shape), mode, target)

    def track_gbps(self, shape, mode, target):
        return self._gbps()

    track_gbps.unit = "GB/s"

    def track_copy_fraction(self, shape, mode, target):
        return self._fraction()

    track_copy_fraction.unit = "of copy bandwidth"

    def track_peak_cuda_mib(self, shape, mode, target):
        return self._peak()

    track_peak_cuda_mib.unit = "MiB"


class CopyBandwidth:
    """The card's device-to-device copy bandwidth: the ceiling the GB/s figures are read against."""

    timeout = 120

    def setup(self):
        import torch

        if not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")

    def track_copy_gbps(self):
        return copy_bandwidth_gbps()

    track_copy_gbps.unit = "GB/s"
