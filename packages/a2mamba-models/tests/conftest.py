"""Shared fixtures: the reference data shipped with the tests, and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import a2mamba_models  # noqa: F401  (registers the models with timm)

# The published checkpoints' key tables and the reference implementation's outputs (tests/data/README.md).
DATA = Path(__file__).resolve().parent / "data"
GOLDEN_FILE = DATA / "a2mamba_small_config_golden.pt"


def _require(path: Path) -> Path:
    # Missing reference data is a broken checkout, not a reason to skip the project's central checks.
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path} (it is part of the repository; restore it with git)")
    return path


@pytest.fixture(scope="session")
def key_tables() -> Path:
    return _require(DATA / "checkpoint-keys")


@pytest.fixture(scope="session")
def golden():
    return torch.load(_require(GOLDEN_FILE), weights_only=True)


@pytest.fixture(autouse=True)
def _one_thread():
    # The shapes here are small: intra-op threads buy little and, on a busy 2-core CI machine,
    # OpenMP's spin-waiting makes every op several times slower. One thread keeps the suite fast.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
