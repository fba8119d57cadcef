"""pytest hooks of the benchmark suite: its parameters, and the software stack in each result file.

No pytest import at module level: asv imports every module of this folder.
"""

from __future__ import annotations

from . import machine


def pytest_benchmark_update_machine_info(config, machine_info):
    # pytest-benchmark records the CPU and Python; the figures also depend on torch and the backends built.
    machine_info["a2mamba"] = machine.describe()


def pytest_generate_tests(metafunc):
    if "op_case" in metafunc.fixturenames:
        from .test_ops_bench import op_cases

        ids, cases = zip(*op_cases(), strict=True)
        metafunc.parametrize("op_case", cases, ids=ids)
