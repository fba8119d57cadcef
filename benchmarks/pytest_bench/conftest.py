"""pytest-benchmark hooks: record the software stack in each result file."""

from __future__ import annotations

from benchmarks.cases import machine


def pytest_benchmark_update_machine_info(config, machine_info):
    # pytest-benchmark records the CPU and Python; the figures also depend on torch and the backends built.
    machine_info["a2mamba"] = machine.describe()
