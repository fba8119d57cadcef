"""Against the reference implementation: its outputs on a small configuration (tests/data/).

The reference was run on random, non-trivial weights; our `A2Mamba(**constructor_kwargs)`
must load them strictly and reproduce logits, stage features, every block's output and
the gradients, in float64 (tight) and float32. Run with every ops backend available on CPU.
"""

from __future__ import annotations

import pytest
import torch

import a2mamba_ops
from a2mamba_models import A2Mamba
from a2mamba_ops import _native

CPU_BACKENDS = [b for b in a2mamba_ops.available_backends() if b in ("reference", "cpu")]
INPUT = "x_2x3x128x160"


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    with a2mamba_ops.use_backend(request.param):
        yield request.param


@pytest.fixture(scope="module")
def golden_model(golden):
    model = A2Mamba(**golden["meta"]["constructor_kwargs"])
    model.load_state_dict(golden["state_dict"], strict=True)
    return model.eval()


def test_the_native_cpu_backend_is_among_those_compared():
    # Without it every comparison below would still pass, on the reference backend alone.
    if _native.missing_native_allowed():
        pytest.skip(f"{_native.ALLOW_MISSING_ENV}=1: the native CPU backend is left out on purpose")
    assert "cpu" in CPU_BACKENDS, f"a2mamba-ops has no native CPU backend here: {_native.IMPORT_ERROR or 'not built'}"


def max_rel(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def test_loads_strictly_and_round_trips_state_dict(golden_model, golden):
    state = golden_model.state_dict()
    assert state.keys() == golden["state_dict"].keys()
    for key, value in golden["state_dict"].items():
        assert torch.equal(state[key], value), key


def test_float64_logits_features_and_blocks(golden_model, golden, backend):
    model = golden_model.double()
    outputs = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
        for name, module in model.named_modules()
        if name in golden["block_outputs_fp64"][INPUT]
    ]
    try:
        with torch.no_grad():
            for name, x in golden["inputs"].items():
                logits = model(x.double())
                assert (logits - golden["logits_fp64"][name]).abs().max().item() < 1e-10, name
            feats = model.forward_intermediates(golden["inputs"][INPUT].double(), intermediates_only=True)
    finally:
        for hook in hooks:
            hook.remove()
    for ours, ref in zip(feats, golden["features_fp64"][INPUT], strict=True):
        assert ours.shape == ref.shape
        assert max_rel(ours, ref) < 1e-11
    for name, ref in golden["block_outputs_fp64"][INPUT].items():
        assert max_rel(outputs[name], ref) < 1e-11, name


def test_float64_gradients(golden_model, golden, backend):
    model = golden_model.double()
    model.zero_grad(set_to_none=True)
    grads = golden["grad_fp64"]
    x = golden["inputs"][grads["input_name"]].double().requires_grad_(True)
    loss = (model(x) * grads["cotangent"]).sum()
    assert loss.item() == pytest.approx(grads["loss"].item(), rel=1e-10)
    loss.backward()
    assert max_rel(x.grad, grads["d_input"]) < 1e-10
    params = dict(model.named_parameters())  # tied tables appear once, under rpb.0
    assert params.keys() == grads["d_params"].keys()
    for name, ref in grads["d_params"].items():
        scale = ref.abs().max().clamp_min(1e-30)
        assert ((params[name].grad - ref).abs().max() / scale).item() < 1e-9, name


def test_float32_logits_and_features(golden_model, golden, backend):
    model = golden_model.float()
    with torch.no_grad():
        for name, x in golden["inputs"].items():
            assert max_rel(model(x.float()), golden["logits_fp32"][name]) < 2e-5, name
        feats = model.forward_intermediates(golden["inputs"][INPUT].float(), intermediates_only=True)
    for ours, ref in zip(feats, golden["features_fp32"][INPUT], strict=True):
        assert max_rel(ours, ref) < 2e-5


def test_stage_geometry_matches_reference(golden):
    """The derived dilations of branch 2 at the golden input sizes (docs/architecture.md §5.3 and §5.4)."""
    from a2mamba_models import branch_windows

    for name, stages in golden["meta"]["stage_geometry"].items():
        for s in stages:
            windows = branch_windows(s["H"], s["W"], s["window"][0])
            assert windows.kernel == tuple(s["window"]), (name, s)
            assert windows.dilation2 == tuple(s["dilation"]), (name, s)
