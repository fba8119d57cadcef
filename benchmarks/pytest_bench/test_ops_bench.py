"""pytest-benchmark run of the ops at the shapes A2Mamba runs (batch 8, 224x224).

Every op (na2d_qk, na2d_av, selective scan) x shape x {forward,
forward_backward} x backend present. Results group by op, shape and mode so
pytest-benchmark's table puts the backends side by side;
`python -m benchmarks.tools.summarize` turns the JSON into the speed-up table
kept in `benchmarks/results/`.

    pytest benchmarks/pytest_bench --benchmark-save-data --benchmark-json=benchmarks/results/ops-cpu-2core.json

Every case, whatever its backend, runs one untimed warm-up call and then the
same number of timed rounds (`A2MAMBA_BENCH_ROUNDS`, default 5), so the
reference and the native kernels are reduced by the same statistics: the
median and its spread (`--benchmark-save-data` keeps the rounds for that).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.cases.ops import MODES, backends_for, make_case, synchronize
from benchmarks.cases.shapes import NA2D_SHAPES, SCAN_SHAPES
from benchmarks.cases.timing import rounds_from_env

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ALL_BACKENDS = ("reference", "cpu", "cuda", "natten")


def op_cases():
    """pytest params for every (op, shape, mode, device, backend) that exists."""
    for op, shapes in (("na2d_qk", NA2D_SHAPES), ("na2d_av", NA2D_SHAPES), ("scan", SCAN_SHAPES)):
        for shape in shapes:
            for mode in MODES:
                for device in DEVICES:
                    for backend in ALL_BACKENDS:
                        if backend == "natten" and op == "scan":
                            continue  # NATTEN has no scan
                        if (device == "cpu") == (backend in ("cuda", "natten")):
                            continue
                        case_id = f"{op}-{shape.name}-{mode}-{backend}"
                        yield pytest.param(op, shape, mode, device, backend, id=case_id)


@pytest.mark.parametrize(("op", "shape", "mode", "device", "backend"), list(op_cases()))
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
    benchmark.pedantic(run, rounds=rounds_from_env(), iterations=1, warmup_rounds=1)
