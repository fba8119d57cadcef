"""Shared fixtures: where the spec data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import a2mamba_models  # noqa: F401  (registers the models with timm)

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared"
# A2MAMBA_SPEC_DIR points elsewhere, e.g. at a copy carried to a GPU machine (../shared does not travel).
SPEC = Path(os.environ.get("A2MAMBA_SPEC_DIR") or SHARED / "spec")


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    if not (SPEC / "checkpoint-keys").is_dir():
        pytest.skip(f"spec data not found at {SPEC} (expected <repo>/../shared/spec with checkpoint-keys/ and golden/)")
    return SPEC


@pytest.fixture(scope="session")
def golden(spec_dir):
    path = spec_dir / "golden" / "a2mamba_small_config_golden.pt"
    if not path.is_file():
        pytest.skip(f"golden data not found at {path}")
    return torch.load(path, weights_only=True)


@pytest.fixture(autouse=True)
def _one_thread():
    # The shapes here are small: intra-op threads buy little and, on a busy 2-core CI machine,
    # OpenMP's spin-waiting makes every op several times slower. One thread keeps the suite fast.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
