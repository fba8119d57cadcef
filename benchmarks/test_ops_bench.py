"""pytest-benchmark suite of the ops at the shapes A2Mamba runs (batch 8, 224x224).

Every op (na2d_qk, na2d_av, selective scan) x shape x {forward,
forward_backward} x backend present. Results group by op, shape and mode so
pytest-benchmark's table puts the backends side by side; `summarize.py` turns
the JSON into the per-shape speed-up table kept in `results/`.

    pytest benchmarks/test_ops_bench.py --benchmark-json=benchmarks/results/ops-cpu.json

Each case runs once untimed (warm-up), then at least 3 rounds
(A2MAMBA_BENCH_ROUNDS) and, for fast calls, as many more as fit in about
A2MAMBA_BENCH_SECONDS (default 1): a millisecond kernel needs many rounds
for its fastest one to escape scheduler noise on a busy two-core machine,
while a five-second reference call needs few. The whole suite takes a few
minutes on two cores.
"""

from __future__ import annotations

import os
import time

import torch

from .a2mamba_shapes import NA2D_SHAPES, SCAN_SHAPES
from .op_cases import MODES, backends_for, make_case, synchronize

ROUNDS = int(os.environ.get("A2MAMBA_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("A2MAMBA_BENCH_SECONDS", "1"))
MAX_ROUNDS = 50
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALL_BACKENDS = ("reference", "cpu", "cuda", "natten")


def op_cases():
    """(id, (op, shape, mode, device, backend)) for every case; conftest.py parametrizes `test_op` with them.

    Parametrized from conftest rather than with a decorator so that this module imports without
    pytest: asv imports every module of this folder when it looks for benchmarks.
    """
    for op, shapes in (("na2d_qk", NA2D_SHAPES), ("na2d_av", NA2D_SHAPES), ("scan", SCAN_SHAPES)):
        for shape in shapes:
            for mode in MODES:
                for device in DEVICES:
                    for backend in ALL_BACKENDS:
                        if backend == "natten" and op == "scan":
                            continue  # NATTEN has no scan
                        if (device == "cpu") == (backend in ("cuda", "natten")):
                            continue
                        yield f"{op}-{shape.name}-{mode}-{backend}", (op, shape, mode, device, backend)


def test_op(benchmark, op_case):
    import pytest

    op, shape, mode, device, backend = op_case
    if backend not in backends_for(device):
        pytest.skip(f"backend {backend!r} is not available on {device} in this installation")
    case = make_case(op, shape, mode, backend, device)

    def run():
        case.run()
        synchronize(device)

    benchmark.group = f"{op} {shape.name} {mode} {device}"
    benchmark.extra_info.update(
        op=op, shape=shape.name, mode=mode, device=device, backend=backend, bytes_moved=case.bytes_moved
    )
    start = time.perf_counter()
    run()  # warm-up, and a first estimate of the call's duration
    rounds = min(MAX_ROUNDS, max(ROUNDS, int(SECONDS / (time.perf_counter() - start))))
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
