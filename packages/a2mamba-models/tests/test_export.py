"""Export: ONNX with the default (native) backends, onnxruntime agreement, `.pt2` programs, the export CLI."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import onnx
import onnxruntime
import pytest
import timm
import torch
from torch import nn

import a2mamba_ops
from a2mamba_models.cli import main
from a2mamba_models.saving import model_for_checkpoint

# The bar: onnxruntime within 1e-4 of PyTorch, relative to the largest logit.
RELATIVE_TOLERANCE = 1e-4
STANDARD_DOMAINS = {"", "ai.onnx"}


def _ort(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _relative_difference(got, expected: torch.Tensor) -> float:
    got = torch.as_tensor(got, dtype=torch.float64)
    expected = expected.detach().double()
    return float((got - expected).abs().max() / expected.abs().max())


def _domains(path) -> set[str]:
    graph = onnx.load(str(path))
    nodes = list(graph.graph.node) + [n for f in graph.functions for n in f.node]
    return {n.domain for n in nodes}


class OpsOnly(nn.Module):
    """Every native op once, at awkward geometry: non-square map, rectangular kernel, dilation, bias."""

    def __init__(self):
        super().__init__()
        self.rpb = nn.Parameter(torch.randn(2, 2 * 3 - 1, 2 * 5 - 1))
        self.A = nn.Parameter(-torch.rand(6, 1) - 0.5)
        self.delta_bias = nn.Parameter(torch.randn(6) * 0.1)

    def forward(self, q, k, v, u, delta, B):
        attn = a2mamba_ops.na2d_qk_softmax(q, k, (3, 5), (2, 1), self.rpb)
        out = a2mamba_ops.na2d_av(attn, v, (3, 5), (2, 1))
        logits = a2mamba_ops.na2d_qk(q, k, (3, 5), (1, 2), self.rpb)
        h = a2mamba_ops.selective_scan_state(u, delta, self.A, B, self.delta_bias, True)
        return out, logits, h


def _ops_inputs(batch: int):
    q, k, v = (torch.randn(batch, 2, 9, 11, 8) for _ in range(3))
    return q, k, v, torch.randn(batch, 6, 70), torch.randn(batch, 6, 70), torch.randn(batch, 1, 70)


def test_native_ops_export_to_standard_onnx_with_plain_torch_onnx_export(tmp_path):
    assert "cpu" in a2mamba_ops.available_backends()  # the default backend is the native one, not the reference
    torch.manual_seed(0)
    module = OpsOnly().eval()
    program = torch.onnx.export(module, _ops_inputs(2), dynamo=True, verbose=False)
    path = tmp_path / "ops.onnx"
    program.save(str(path))
    assert _domains(path) <= STANDARD_DOMAINS  # no a2mamba:: node left for the runtime to resolve
    session = _ort(path)
    inputs = _ops_inputs(2)
    got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)})
    with torch.no_grad():
        expected = module(*inputs)
    for g, e in zip(got, expected, strict=True):
        assert _relative_difference(g, e) < 1e-5


def test_export_does_not_change_what_runs_eagerly_or_in_torch_export():
    """The ONNX decompositions apply to ONNX export only: torch.export keeps the native ops."""
    program = torch.export.export(OpsOnly().eval(), _ops_inputs(2))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    native = {"na2d_qk", "na2d_qk_softmax", "na2d_av", "selective_scan_state"}
    assert {f"a2mamba.{name}.default" for name in native} <= targets


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """A checkpoint of a2mamba_test with 5 classes, its model, and its export through the CLI."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(5)
    model = timm.create_model("a2mamba_test", num_classes=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    checkpoint = folder / "fine-tuned.pth"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    onnx_path = folder / "model.onnx"
    args = ["export", "a2mamba_test", "--img-size", "64", "96", "--checkpoint", str(checkpoint), "-o", str(onnx_path)]
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(args) == 0
    model = model_for_checkpoint("a2mamba_test", checkpoint, img_size=(64, 96))
    return checkpoint, model, onnx_path, printed.getvalue()


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_export_runs_in_onnxruntime_at_any_batch_within_tolerance(fine_tuned, batch):
    _, model, path, _ = fine_tuned
    assert _domains(path) <= STANDARD_DOMAINS
    session = _ort(path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = torch.randn(batch, 3, 64, 96)
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert got.shape == (batch, 5)
    assert _relative_difference(got, expected) < RELATIVE_TOLERANCE


def test_export_cli_reports_the_onnxruntime_difference(fine_tuned):
    printed = fine_tuned[3]
    assert "onnxruntime vs PyTorch: max |difference| = " in printed
    assert float(printed.split("= ")[1].split()[0]) < RELATIVE_TOLERANCE
    assert "input (batch, 3, 64, 96), batch dynamic" in printed


def test_pt2_export_cli_gives_a_program_with_dynamic_batch(fine_tuned, tmp_path, capsys):
    checkpoint = fine_tuned[0]
    out = tmp_path / "p.pt2"
    args = ["export", "a2mamba_test", "--format", "pt2", "--img-size", "64", "64", "--checkpoint", str(checkpoint)]
    assert main([*args, "-o", str(out)]) == 0
    assert "batch dynamic" in capsys.readouterr().out
    program = torch.export.load(str(out))
    model = model_for_checkpoint("a2mamba_test", checkpoint, img_size=(64, 64))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


def test_export_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_text("not weights")
    assert main(["export", "a2mamba_test", "--checkpoint", str(bad), "-o", str(tmp_path / "m.onnx")]) == 2
    assert main(["export", "a2mamba_test", "-o", str(tmp_path / "absent" / "m.onnx")]) == 2
    other = timm.create_model("a2mamba_test", embed_dims=[16, 32, 64, 128])
    torch.save(other.state_dict(), tmp_path / "other.pth")
    assert main(["export", "a2mamba_test", "--checkpoint", str(tmp_path / "other.pth")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("a2mamba-models export: error:") for line in lines)
    with pytest.raises(SystemExit) as done:
        main(["export", "a2mamba_test", "--img-size", "16", "16"])
    assert done.value.code == 2
