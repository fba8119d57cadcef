"""A build that silently lost its kernels must not pass: the native CPU backend is required here,
and `python -m a2mamba_ops` fails when a backend the build compiled does not load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import a2mamba_ops
from a2mamba_ops import __main__ as report
from a2mamba_ops import _native


def test_native_cpu_backend_is_loaded():
    if _native.missing_native_allowed():
        pytest.skip(f"{_native.ALLOW_MISSING_ENV}=1: running without the native CPU backend on purpose")
    assert "cpu" in a2mamba_ops.available_backends(), (
        f"the native CPU backend is missing ({_native.IMPORT_ERROR or 'not built'}); build a2mamba-ops, or set "
        f"{_native.ALLOW_MISSING_ENV}=1 to test the reference backend alone"
    )


def test_report_exits_zero_for_a_sound_install():
    done = subprocess.run([sys.executable, "-m", "a2mamba_ops"], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backends    reference" in done.stdout


def _fake_install(monkeypatch, tmp_path, manifest, *, c_module, import_error=None):
    path = tmp_path / "_build_manifest.json"
    if manifest is not None:
        path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    monkeypatch.setattr(_native, "MANIFEST", path)
    monkeypatch.setattr(_native, "_C", c_module)
    monkeypatch.setattr(_native, "IMPORT_ERROR", import_error)


class _CpuOnlyLibrary:
    cpu = SimpleNamespace(
        current_capability=lambda: "default",
        compiled_capabilities=lambda: ["default"],
        supported_capabilities=lambda: ["default"],
    )

    @staticmethod
    def build_info():
        return {"torch_version": "x", "cuda": False, "cuda_archs": "", "compiler": "gcc"}


def test_report_fails_when_the_built_library_does_not_load(monkeypatch, tmp_path, capsys):
    _fake_install(monkeypatch, tmp_path, {"backends": ["cpu"]}, c_module=None, import_error="undefined symbol: foo")
    assert report.main() == 1
    err = capsys.readouterr().err
    assert "cpu backend was built but does not load" in err and "undefined symbol: foo" in err


def test_report_fails_when_a_built_cuda_backend_is_missing(monkeypatch, tmp_path, capsys):
    _fake_install(monkeypatch, tmp_path, {"backends": ["cpu", "cuda"]}, c_module=_CpuOnlyLibrary)
    assert report.main() == 1
    assert "cuda backend was built but does not load" in capsys.readouterr().err


def test_report_accepts_a_checkout_that_was_never_built(monkeypatch, tmp_path):
    _fake_install(monkeypatch, tmp_path, None, c_module=None, import_error="No module named '_C'")
    assert _native.check_build() == []
    assert report.main() == 0


def test_report_names_an_unreadable_manifest(monkeypatch, tmp_path):
    _fake_install(monkeypatch, tmp_path, "{not json", c_module=_CpuOnlyLibrary)
    (problem,) = _native.check_build()
    assert "unreadable build manifest" in problem
