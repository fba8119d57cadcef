"""Fast checks of the benchmark tooling (no timing): shapes, summary table, fallback runner, asv build."""

from __future__ import annotations

import math

from . import a2mamba_shapes, asv_build, gpu_kernels, op_cases, run_without_asv, summarize

# pytest is imported inside the tests: asv imports every module of this folder, without pytest.


def test_shapes_follow_the_architecture():
    import pytest

    # Branch 2's dilation is min(H // K, K): 5 at stage 1, 3 at stage 2, 2 at stage 3.
    dilations = {(s.size, s.kernel): set() for s in a2mamba_shapes.NA2D_SHAPES}
    for s in a2mamba_shapes.NA2D_SHAPES:
        dilations[(s.size, s.kernel)].add(s.dilation)
        assert s.size >= s.kernel * s.dilation  # NATTEN's requirement holds at every listed shape
    assert dilations == {(56, 11): {1, 5}, (28, 9): {1, 3}, (14, 7): {1, 2}}
    tiny_stage1 = a2mamba_shapes.na2d_shape("t-s1-56px-h1x24-k11-d1")
    assert tiny_stage1.qkv_shape == (8, 1, 56, 56, 24)
    assert tiny_stage1.rpb_shape == (1, 21, 21)
    assert {s.length for s in a2mamba_shapes.SCAN_SHAPES} == {3136, 784, 196}
    for name in a2mamba_shapes.QUICK_NA2D + [a2mamba_shapes.REFERENCE_NA2D]:
        a2mamba_shapes.na2d_shape(name)
    for name in a2mamba_shapes.QUICK_SCAN + [a2mamba_shapes.REFERENCE_SCAN]:
        a2mamba_shapes.scan_shape(name)
    with pytest.raises(KeyError, match="unknown shape"):
        a2mamba_shapes.scan_shape("s9")


def _bench(backend, mode, seconds, shape="s1"):
    info = dict(op="scan", shape=shape, mode=mode, device="cpu", backend=backend)
    return {"name": f"{shape}-{mode}-{backend}", "extra_info": info, "stats": {"min": seconds, "median": seconds * 2}}


def test_summary_reports_speedup_and_flags_misses():
    report = {
        "benchmarks": [
            _bench("reference", "forward_backward", 1.0),
            _bench("cpu", "forward_backward", 0.5),  # 2x: under a 5x target
            _bench("reference", "forward", 1.0),
            _bench("cpu", "forward", 0.1),
        ],
        "machine_info": {"a2mamba": {"cpu_model": "Test CPU", "torch": "9.9"}},
    }
    text = summarize.render(report, stat="min", target=5.0)
    assert "| scan | s1 | forward_backward | cpu | 1000.00 | 500.00 | 2.0x < |" in text
    assert "| scan | s1 | forward | cpu | 1000.00 | 100.00 | 10.0x |" in text
    assert "below 5x: 1" in text
    assert "Test CPU" in text


def test_summary_rejects_foreign_benchmarks():
    import pytest

    with pytest.raises(ValueError, match="lacks"):
        summarize.render({"benchmarks": [{"name": "x", "extra_info": {}, "stats": {"min": 1}}]})


class _Fake:
    params = ([1, 2, 3],)
    param_names = ["n"]
    repeat = (2, 3, 1.0)
    calls: list = []

    def setup_cache(self):
        _Fake.calls.append("cache")
        return 10

    def setup(self, cache, n):
        if n == 2:
            raise NotImplementedError("skip two")

    def time_it(self, cache, n):
        pass

    def track_value(self, cache, n):
        if n == 3:
            raise RuntimeError("broken")
        return cache + n


def test_fallback_runner_skips_fails_and_tracks():
    log = []
    cache: dict = {}
    track = run_without_asv.Bench("fake._Fake.track_value", _Fake, "track_value", None)
    result, params = run_without_asv.run_bench(track, cache, log.append)[:2]
    assert result[0] == 11  # setup_cache's value reaches the benchmark
    assert math.isnan(result[1])  # NotImplementedError in setup: skipped, as in asv
    assert result[2] is None  # an error: failed, and the run went on
    assert params == [["1", "2", "3"]]
    timed = run_without_asv.Bench("fake._Fake.time_it", _Fake, "time_it", None)
    result = run_without_asv.run_bench(timed, cache, log.append)
    assert result[0][0] >= 0 and len(result[7][0]) >= 2
    assert _Fake.calls == ["cache"]  # once per class, shared by its benchmarks


def test_fallback_runner_finds_the_asv_suites():
    names = {b.name for b in run_without_asv.discover(("ops", "models", "accuracy"), None)}
    assert {"ops.NA2D.time_call", "ops.Scan.peakmem_call", "models.Inference.track_img_per_s"} <= names
    assert "accuracy.Equivalence.track_float32_rel_error" in names


def test_asv_build_finds_the_packages_a_commit_has(tmp_path):
    for name in ("a2mamba-ops", "a2mamba-train"):
        (tmp_path / "packages" / name).mkdir(parents=True)
        (tmp_path / "packages" / name / "pyproject.toml").write_text("")
    (tmp_path / "packages" / "a2mamba-models").mkdir()  # no pyproject: not a package at this commit
    found = [p.name for p in asv_build.present_packages(tmp_path)]
    assert found == ["a2mamba-ops", "a2mamba-train"]


def test_backward_case_times_the_backward_alone():
    import torch

    shape = a2mamba_shapes.ScanShape("tiny", dim=3, length=5, batch=2)
    both = op_cases.make_case("scan", shape, "forward_backward", "reference")
    alone = op_cases.make_case("scan", shape, op_cases.BACKWARD, "reference")
    forward = op_cases.make_case("scan", shape, "forward", "reference")
    assert alone.bytes_moved + forward.bytes_moved == both.bytes_moved
    # Same inputs (fixed generator), same gradients; calling it twice needs the retained graph.
    for want, got in zip(both.run(), alone.run(), strict=True):
        torch.testing.assert_close(got, want)
    alone.run()


def test_gpu_kernel_report_runs_on_cpu(tmp_path):
    import importlib.util
    import json

    import pytest

    args = ["--device", "cpu", "--batch", "1", "--repeats", "1", "--dtypes", "fp32", "--out", str(tmp_path)]
    assert gpu_kernels.main(args + ["--shapes", "s3-14px.*d2|s3-L196-D128"]) == 0
    report = json.loads((tmp_path / "gpu_kernels.json").read_text())
    cases = {(r["op"], r["direction"]) for r in report["results"]}
    assert cases == {(op, d) for op in ("na2d_qk", "na2d_av", "scan") for d in ("fwd", "bwd")}
    for r in report["results"]:
        assert r["error"] is None and r["ms"] > 0 and r["gbps"] > 0 and r["speedup_vs_reference"] > 0
    assert "| na2d_qk | t-s3-14px-h4x32-k7-d2 | fp32 | bwd |" in (tmp_path / "gpu_kernels.md").read_text()
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "gpu_kernels.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit):
        gpu_kernels.main(args[:-2] + ["--dtypes", "fp8", "--out", str(tmp_path)])
