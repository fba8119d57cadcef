"""Checks of the benchmark tooling at toy sizes: what it computes and writes, never how fast anything is."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pkgutil
import time
from pathlib import Path

import pytest
import torch

from benchmarks.cases import machine, shapes
from benchmarks.cases import ops as op_cases
from benchmarks.cases.timing import Timing, measure, measure_side_by_side, rounds_from_env
from benchmarks.tools import (
    ab_builds,
    asv_build,
    asv_results,
    cpu_targets,
    export_check,
    gpu_kernels,
    model_throughput,
    shared_cores,
    summarize,
)

BENCHMARKS = Path(__file__).resolve().parents[1]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(autouse=True)
def one_thread():
    # On shared cores a second torch thread spin-waits for the busy one: these toy runs get 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shapes_follow_the_architecture():
    # Branch 2's dilation is min(H // K, K): 5 at stage 1, 3 at stage 2, 2 at stage 3.
    dilations = {(s.size, s.kernel): set() for s in shapes.NA2D_SHAPES}
    for s in shapes.NA2D_SHAPES + shapes.TARGET_NA2D:
        dilations.setdefault((s.size, s.kernel), set()).add(s.dilation)
        assert s.size >= s.kernel * s.dilation  # NATTEN's requirement holds at every listed shape
    assert dilations == {(56, 11): {1, 5}, (28, 9): {1, 3}, (14, 7): {1, 2}}
    tiny_stage1 = shapes.na2d_shape("t-s1-56px-h1x24-k11-d1")
    assert tiny_stage1.qkv_shape == (8, 1, 56, 56, 24)
    assert tiny_stage1.rpb_shape == (1, 21, 21)
    assert {s.length for s in shapes.SCAN_SHAPES} == {3136, 784, 196}
    assert [(s.dim, s.length, s.batch) for s in shapes.TARGET_SCAN] == [(32, 3136, 8), (128, 196, 8)]
    for name in shapes.QUICK_NA2D + [shapes.REFERENCE_NA2D]:
        shapes.na2d_shape(name)
    for name in shapes.QUICK_SCAN + [shapes.REFERENCE_SCAN]:
        shapes.scan_shape(name)
    with pytest.raises(KeyError, match="unknown shape"):
        shapes.scan_shape("s9")


def test_timing_reports_the_median_and_its_spread():
    t = Timing.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.rounds, t.median, t.q1, t.q3, t.min, t.max) == (5, 3.0, 2.0, 4.0, 1.0, 5.0)
    assert Timing.of([1.0, 2.0]).quantile(0.25) == pytest.approx(1.25)  # interpolated, as numpy
    assert t.as_dict()["samples_s"] == [5.0, 1.0, 3.0, 2.0, 4.0]  # kept in the order measured
    with pytest.raises(ValueError, match="at least one sample"):
        Timing.of([])


def test_side_by_side_gives_every_contender_the_same_interleaved_rounds():
    calls = []
    timings = measure_side_by_side({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-ups first, then round-robin
    assert {name: t.rounds for name, t in timings.items()} == {"a": 3, "b": 3}
    assert measure(lambda: None, rounds=4, warmup=0).rounds == 4
    with pytest.raises(ValueError, match="rounds"):
        measure(lambda: None, rounds=0)
    with pytest.raises(ValueError, match="device"):
        measure(lambda: None, rounds=1, device="tpu")


def test_rounds_and_machine_label_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("A2MAMBA_BENCH_ROUNDS", "7")
    assert rounds_from_env() == 7
    monkeypatch.setenv("A2MAMBA_BENCH_ROUNDS", "0")
    with pytest.raises(ValueError, match="A2MAMBA_BENCH_ROUNDS"):
        rounds_from_env()
    monkeypatch.delenv("A2MAMBA_BENCH_MACHINE", raising=False)
    assert machine.label().startswith("cpu-") and machine.label().endswith("core")
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "epyc-2core")
    assert machine.label() == "epyc-2core"
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "/home/me")
    with pytest.raises(ValueError, match="A2MAMBA_BENCH_MACHINE"):
        machine.label()


def _bench(backend, mode, samples, shape="s1"):
    info = dict(op="scan", shape=shape, mode=mode, device="cpu", backend=backend)
    return {"name": f"{shape}-{mode}-{backend}", "extra_info": info, "stats": {"data": samples, "min": min(samples)}}


def test_machine_record_names_the_allocator_and_thread_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4294967296")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("A2MAMBA_BENCH_UNRELATED", "x")
    info = machine.describe()
    assert info["settings"]["MALLOC_TRIM_THRESHOLD_"] == "4294967296"
    assert info["settings"]["OMP_WAIT_POLICY"] == "PASSIVE" and "A2MAMBA_BENCH_UNRELATED" not in info["settings"]
    line = machine.one_line(info)
    assert (
        ", environment " in line and "MALLOC_TRIM_THRESHOLD_=4294967296" in line and "OMP_WAIT_POLICY=PASSIVE" in line
    )


def test_summary_reports_median_speedup_and_flags_misses():
    report = {
        "benchmarks": [
            # The fastest rounds alone would say 10x; the medians say 2x, a miss of the 5x target.
            _bench("reference", "forward_backward", [1.0, 1.0, 1.0]),
            _bench("cpu", "forward_backward", [0.1, 0.5, 0.6]),
            _bench("reference", "forward", [1.0, 1.2, 0.8]),
            _bench("cpu", "forward", [0.1, 0.1, 0.1]),
        ],
        "machine_info": {"a2mamba": {"cpu_model": "Test CPU", "torch": "9.9"}},
    }
    text = summarize.render(report, target=5.0)
    fb, f = "| scan | s1 | forward_backward | cpu |", "| scan | s1 | forward | cpu |"
    assert f"{fb} 1000.00 (1000.00–1000.00) | 500.00 (300.00–550.00) | 2.0x < |" in text
    assert f"{f} 1000.00 (900.00–1100.00) | 100.00 (100.00–100.00) | 10.0x |" in text
    assert "below 5x: 1" in text and "Test CPU" in text and "3 rounds" in text


def test_summary_refuses_what_would_not_be_one_honest_run(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        summarize.render({"benchmarks": [{"name": "x", "extra_info": {}, "stats": {"data": [1.0]}}]})
    without_rounds = {"benchmarks": [{**_bench("cpu", "forward", [1.0]), "stats": {"min": 1.0}}]}
    with pytest.raises(ValueError, match="--benchmark-save-data"):
        summarize.render(without_rounds)
    uneven = {"benchmarks": [_bench("reference", "forward", [1.0] * 3), _bench("cpu", "forward", [0.1] * 50)]}
    with pytest.raises(ValueError, match="different numbers of rounds"):
        summarize.render(uneven)
    path = tmp_path / "uneven.json"
    path.write_text(json.dumps(uneven))
    assert summarize.main([str(path)]) == 2  # one line on stderr, no traceback


def test_asv_build_finds_the_packages_a_commit_has(tmp_path):
    for name in ("a2mamba-ops", "a2mamba-train"):
        (tmp_path / "packages" / name).mkdir(parents=True)
        (tmp_path / "packages" / name / "pyproject.toml").write_text("")
    (tmp_path / "packages" / "a2mamba-models").mkdir()  # no pyproject: not a package at this commit
    found = [p.name for p in asv_build.present_packages(tmp_path)]
    assert found == ["a2mamba-ops", "a2mamba-train"]


def test_asv_results_lose_the_local_interpreter_path(tmp_path):
    folder = tmp_path / "cpu-2core"
    folder.mkdir()
    interpreter = "/home/me/project/.nox/asv/bin/python"
    env = "existing-py_home_me_project_.nox_asv_bin_python-A2MAMBA_CUDAOFF"
    document = {"commit_hash": "abcdef0123", "env_name": env, "python": interpreter, "params": {"python": interpreter}}
    (folder / f"abcdef01-{env}.json").write_text(json.dumps(document))
    (folder / "machine.json").write_text("{}")
    assert asv_results.main(["rename", str(tmp_path), "--python", "3.11"]) == 0
    written = folder / "abcdef01-existing-py3.11-A2MAMBA_CUDAOFF.json"
    assert sorted(p.name for p in folder.iterdir()) == ["abcdef01-existing-py3.11-A2MAMBA_CUDAOFF.json", "machine.json"]
    assert "/home" not in written.read_text()
    assert json.loads(written.read_text())["params"]["python"] == "3.11"
    assert asv_results.normalize(tmp_path, "3.11") == []  # a second pass changes nothing


def test_asv_machine_record_names_the_cpu(tmp_path):
    path = tmp_path / "asv-machine.json"
    path.write_text(json.dumps({"other": {"machine": "other"}, "version": 1}))
    asv_results.record_machine("cpu-2core", path)
    document = json.loads(path.read_text())
    assert document["other"] == {"machine": "other"} and document["version"] == 1
    entry = document["cpu-2core"]
    assert entry["machine"] == "cpu-2core" and entry["cpu"] == machine.cpu_model() and entry["num_cpu"].isdigit()
    assert set(entry) == {"arch", "cpu", "machine", "num_cpu", "os", "ram"}  # every field asv's results show


def test_committed_results_carry_no_local_paths():
    for path in (BENCHMARKS / "results").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md"):
            for needle in ("/home/", "/work/", "/root/", "/tmp/", "existing-py_"):
                assert needle not in path.name and needle not in path.read_text(), (path, needle)
    assert not list((BENCHMARKS / "results").rglob("*rerun*"))


def test_every_module_of_the_asv_folder_is_a_suite():
    # asv imports benchmarks/asv as a package of its own; here it is benchmarks.asv.
    package = importlib.import_module("benchmarks.asv")
    modules = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert {"ops", "models", "accuracy"} <= set(modules)
    for name in modules:
        module = importlib.import_module(f"benchmarks.asv.{name}")
        found = [
            f"{cls_name}.{attr}"
            for cls_name, cls in vars(module).items()
            if inspect.isclass(cls) and cls.__module__ == module.__name__
            for attr in dir(cls)
            if attr.startswith(("time_", "track_", "peakmem_", "mem_"))
        ]
        assert found, f"benchmarks/asv/{name}.py defines no benchmark"


def test_backward_case_times_the_backward_alone():
    shape = shapes.ScanShape("tiny", dim=3, length=5, batch=2)
    both = op_cases.make_case("scan", shape, "forward_backward", "reference")
    alone = op_cases.make_case("scan", shape, op_cases.BACKWARD, "reference")
    forward = op_cases.make_case("scan", shape, "forward", "reference")
    assert alone.bytes_moved + forward.bytes_moved == both.bytes_moved
    # Same inputs (fixed generator), same gradients; calling it twice needs the retained graph.
    for want, got in zip(both.run(), alone.run(), strict=True):
        torch.testing.assert_close(got, want)
    alone.run()


def test_attention_case_is_qk_bias_softmax_av_with_its_flops():
    import a2mamba_ops

    shape = shapes.NA2DShape("toy", heads=2, size=7, head_dim=3, kernel=3, dilation=2, batch=1)
    forward = op_cases.make_attention_case(shape, "forward", "reference")
    both = op_cases.make_attention_case(shape, "forward_backward", "reference")
    products = 2 * 1 * 2 * 7 * 7 * 3 * 3 * 3  # 2 FLOPs x b h H W K K c
    assert (forward.flops, both.flops) == (2 * products, 6 * products)
    assert op_cases.make_case("na2d_qk", shape, "forward_backward", "reference").flops == 3 * products
    # The same tensors by hand: the case computes what a network's attention branch does.
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(shape.qkv_shape, generator=gen) * shape.head_dim**-0.5
    k = torch.randn(shape.qkv_shape, generator=gen)
    rpb = torch.randn(shape.rpb_shape, generator=gen) * 0.02
    v = torch.randn(shape.qkv_shape, generator=torch.Generator().manual_seed(2))
    with a2mamba_ops.use_backend("reference"):
        attn = a2mamba_ops.na2d_qk(q, k, 3, 2, rpb=rpb).softmax(-1)
        want = a2mamba_ops.na2d_av(attn, v, 3, 2)
    torch.testing.assert_close(forward.run(), want)
    grads = both.run()
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape, rpb.shape]


def test_gpu_kernel_report_runs_on_cpu(tmp_path):
    args = ["--device", "cpu", "--batch", "1", "--repeats", "1", "--dtypes", "fp32", "--out", str(tmp_path)]
    assert gpu_kernels.main(args + ["--shapes", "s3-14px.*d2|s3-L196-D128"]) == 0
    report = json.loads((tmp_path / "gpu_kernels.json").read_text())
    cases = {(r["op"], r["direction"]) for r in report["results"]}
    assert cases == {(op, d) for op in ("na2d_qk", "na2d_av", "scan") for d in ("fwd", "bwd")}
    for r in report["results"]:
        assert r["error"] is None and r["ms"] > 0 and r["gbps"] > 0 and r["speedup_vs_reference"] > 0
    assert "| na2d_qk | t-s3-14px-h4x32-k7-d2 | fp32 | bwd |" in (tmp_path / "gpu_kernels.md").read_text()
    if HAS_MATPLOTLIB:
        assert (tmp_path / "gpu_kernels.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit):
        gpu_kernels.main(args[:-2] + ["--dtypes", "fp8", "--out", str(tmp_path)])


def test_model_throughput_report_runs_on_cpu(tmp_path):
    args = ["--device", "cpu", "--batch", "2", "--img-size", "64", "--rounds", "1", "--warmup", "0"]
    assert model_throughput.main(args + ["--models", "a2mamba_n,no_such_model", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "model_throughput.json").read_text())
    rows = {row["model"]: row for row in report["models"]}
    for kind in ("inference", "training"):
        assert rows["a2mamba_n"][kind]["img_per_s"] > 0 and rows["a2mamba_n"][kind]["timing"]["rounds"] == 1
        # A model that cannot run is reported as failed (and the exit status says so); the others are measured.
        assert "timm does not know" in rows["no_such_model"][kind]["error"]
    table = (tmp_path / "model_throughput.md").read_text()
    assert "| a2mamba_n |" in table and "| no_such_model | FAILED | FAILED |" in table
    with pytest.raises(SystemExit):
        model_throughput.main(["--device", "cpu", "--amp", "--out", str(tmp_path)])


def test_cpu_targets_report_runs_at_toy_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "toy")
    assert cpu_targets.main(["--tiny", "--rounds", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cpu-targets-toy.json").read_text())
    assert report["label"] == "toy" and "commit" in report
    names = [t["name"] for t in report["targets"]]
    assert len(names) == 3 * 2 + 2 + 3  # attention x modes, scan shapes, model ratios
    assert "a2mamba_n inference b1 / resnet50" in names and "a2mamba_n training b2 / resnet50" in names
    for t in report["targets"]:
        assert t["ratio"] > 0 and t["met"] == (t["ratio"] >= t["threshold"])
    assert {row["timing"]["rounds"] for row in report["measurements"]} == {1}
    profile = report["profile"]
    assert profile["model"] == "a2mamba_n" and profile["ops"]
    assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
    text = (tmp_path / "cpu-targets-toy.md").read_text()
    assert "## Targets" in text and "## Where the time goes" in text and ("| met |" in text or "| MISSED |" in text)
    if HAS_MATPLOTLIB:
        assert (tmp_path / "cpu-targets-toy.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit):
        cpu_targets.main(["--rounds", "0", "--out", str(tmp_path)])


def test_asv_targets_suite_tracks_a_side_by_side_ratio():
    from benchmarks.asv.targets import ScanVsCopy

    suite = ScanVsCopy()
    suite.setup("L196-D128")
    assert suite.track_fraction_of_copy("L196-D128") > 0


def test_export_report_flags_a_variant_over_the_tolerance_and_gives_the_runtime_ratio():
    def latency(runtime, batch, median):
        return {"runtime": runtime, "batch": batch, **Timing.of([median] * 3).as_dict()}

    report = {
        "img_size": [224, 224],
        "machine": machine.describe(),
        "threads": 2,
        "rounds": 3,
        "variants": [
            {
                "variant": "a2mamba_n",
                "export_s": 30.0,
                "file_mib": 17.0,
                "difference_batch1": 2e-7,
                "difference_batch3": 3e-7,
                "ok": True,
            },
            {
                "variant": "a2mamba_t",
                "export_s": 40.0,
                "file_mib": 60.0,
                "difference_batch1": 2e-3,
                "difference_batch3": 3e-7,
                "ok": False,
            },
            {"variant": "a2mamba_s", "error": "RuntimeError: boom"},
        ],
        "latency": [latency("pytorch", 1, 0.030), latency("onnxruntime", 1, 0.020)],
    }
    text = export_check.markdown(report)
    assert "| a2mamba_n | 30 | 17.0 | 2.0e-07 | 3.0e-07 | yes |" in text
    assert "| a2mamba_t |" in text and text.count("| NO |") == 1
    assert "| a2mamba_s | failed: RuntimeError: boom |" in text
    assert "| 1 | onnxruntime | 20.0 | 20.0-20.0 | 1.50x |" in text


def test_export_check_refuses_unknown_variants_and_odd_sizes(tmp_path, capsys):
    for args in (["--variants", "resnet50"], ["--img-size", "100"], ["--rounds", "-1"]):
        with pytest.raises(SystemExit) as stop:
            export_check.parse_args(["--out", str(tmp_path), *args])
        assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--variants must name published variants" in err and "--img-size must be a multiple of 32" in err


def test_shared_cores_report_runs_every_setting_at_toy_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "toy")
    assert shared_cores.main(["--tiny", "--rounds", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "shared-cores-toy.json").read_text())
    settings = {(r["threads"], r["passive"], r["busy"]) for r in report["rows"]}
    assert settings == {(t, p, b) for t in (1, 2) for p in (False, True) for b in (False, True)}
    for row in report["rows"]:
        for rate in (row["img_per_s"], row["attention_gflop_per_s"]):
            assert len(rate["samples_s"]) == 1 and rate["low"] <= rate["median"] <= rate["high"]
    text = (tmp_path / "shared-cores-toy.md").read_text()
    assert "2 threads, PASSIVE, one core busy" in text and "| vs 2 threads quiet |" in text
    with pytest.raises(SystemExit):
        shared_cores.main(["--rounds", "0", "--out", str(tmp_path)])


def test_ab_builds_alternates_fresh_processes_of_each_build(tmp_path, monkeypatch):
    import a2mamba_ops

    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "toy")
    site = Path(a2mamba_ops.__file__).resolve().parents[1]
    argv = ["--tiny", "--processes", "2", "--rounds", "1", "--out", str(tmp_path), "--name", "toy-check"]
    assert ab_builds.main([*argv, "--build", f"one={site}", "--build", f"two={site}"]) == 0
    report = json.loads((tmp_path / "ab-toy-check-toy.json").read_text())
    assert [line["build"] for line in report["lines"]] == ["one", "two", "two", "one"]
    for line in report["lines"]:
        assert set(line["ratios"]) == {s.name for s in shapes.TARGET_NA2D}
        assert all(r > 0 for r in line["ratios"].values()) and "ops_file" not in line
    assert set(report["medians"]) == {"one", "two"}
    text = (tmp_path / "ab-toy-check-toy.md").read_text()
    assert "## Every process, in the order run" in text and str(site) in text


def test_ab_builds_sets_a_builds_environment_in_its_processes_only(tmp_path, monkeypatch):
    import a2mamba_ops

    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "toy")
    seen = []
    real = ab_builds.run_worker

    def recording(build, rounds, modes, tiny):
        seen.append((build.name, dict(build.env), modes))
        return real(build, rounds, modes, tiny)

    monkeypatch.setattr(ab_builds, "run_worker", recording)
    site = Path(a2mamba_ops.__file__).resolve().parents[1]
    argv = ["--tiny", "--processes", "1", "--rounds", "1", "--out", str(tmp_path), "--name", "env-check"]
    argv += ["--build", f"plain={site}", "--build", f"kept={site}", "--env", "kept:MALLOC_TRIM_THRESHOLD_=4294967296"]
    assert ab_builds.main([*argv, "--modes", "forward,forward_backward"]) == 0
    assert seen == [
        ("plain", {}, ["forward", "forward_backward"]),
        ("kept", {"MALLOC_TRIM_THRESHOLD_": "4294967296"}, ["forward", "forward_backward"]),
    ]
    report = json.loads((tmp_path / "ab-env-check-toy.json").read_text())
    names = {s.name for s in shapes.TARGET_NA2D}
    assert set(report["lines"][0]["ratios"]) == names | {f"{n} forward_backward" for n in names}
    assert "`MALLOC_TRIM_THRESHOLD_=4294967296`" in (tmp_path / "ab-env-check-toy.md").read_text()


def test_ab_builds_refuses_what_it_cannot_compare(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "toy")
    base = ["--out", str(tmp_path), "--name", "x"]
    for args, message in (
        (["--build", "a=HEAD"], "at least two"),
        (["--build", "a=HEAD", "--build", "HEAD"], "NAME=REV or NAME=DIR"),
        (["--build", "a=HEAD", "--build", "a=HEAD"], "names must differ"),
        (["--build", "a=HEAD", "--build", "b=HEAD", "--name", "a b"], "--name must be"),
        (["--build", "a=HEAD", "--build", "b=HEAD", "--env", "c:X=1"], "--env names no build"),
        (["--build", "a=HEAD", "--build", "b=HEAD", "--env", "a=X"], "NAME:KEY=VALUE"),
        (["--build", "a=HEAD", "--build", "b=HEAD", "--modes", "backward"], "--modes must be"),
    ):
        with pytest.raises(SystemExit) as stop:
            ab_builds.main([*base, *args])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="neither a folder holding a2mamba_ops nor a git revision"):
        ab_builds.prepare("a", "no-such-revision-xyz", tmp_path)


@pytest.mark.parametrize("tool", [cpu_targets, export_check, shared_cores], ids=lambda t: t.__name__.split(".")[-1])
def test_a_bad_machine_label_is_a_usage_error(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("A2MAMBA_BENCH_MACHINE", "my laptop/1")
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "A2MAMBA_BENCH_MACHINE" in capsys.readouterr().err


def test_busy_core_process_is_gone_after_the_block():
    with shared_cores.busy_core(False) as nothing:
        assert nothing is None
    with shared_cores.busy_core(True) as spinner:
        time.sleep(0.2)
        assert spinner.poll() is None, "the busy process must still spin inside the block"
        pid = spinner.pid
    assert spinner.returncode is not None and not Path(f"/proc/{pid}").exists()
