"""pytest-benchmark suite of the ops at the shapes A2Mamba runs (batch 8, 224x224).

Every op (na2d_qk, na2d_av, selective scan) x shape x {forward,
forward_backward} x backend present. Results group by op, shape and mode so
pytest-benchmark's table puts the backends side by side; `summarize.py` turns
the JSON into the per-shape speed-up table kept in `results/`.

    pytest benchmarks/test_ops_bench.py --benchmark-json=benchmarks/results/ops-cpu.json

Rounds default to 3 (plus one warm-up) so the whole suite takes a few minutes
on two cores; set A2MAMBA_BENCH_ROUNDS for steadier figures.
"""

from __future__ import annotations

import os

import pytest
import torch

from .a2mamba_shapes import NA2D_SHAPES, SCAN_SHAPES
from .op_cases import MODES, backends_for, make_case, synchronize

ROUNDS = int(os.environ.get("A2MAMBA_BENCH_ROUNDS", "3"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALL_BACKENDS = ("reference", "cpu", "cuda", "natten")


def _cases():
    for op, shapes in (("na2d_qk", NA2D_SHAPES), ("na2d_av", NA2D_SHAPES), ("scan", SCAN_SHAPES)):
        for shape in shapes:
            for mode in MODES:
                for device in DEVICES:
                    for backend in ALL_BACKENDS:
                        if backend == "natten" and op == "scan":
                            continue  # NATTEN has no scan
                        if (device == "cpu") == (backend in ("cuda", "natten")):
                            continue
                        yield pytest.param(op, shape, mode, device, backend, id=f"{op}-{shape.name}-{mode}-{backend}")


@pytest.mark.parametrize(("op", "shape", "mode", "device", "backend"), list(_cases()))
def test_op(benchmark, op, shape, mode, device, backend):
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
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
