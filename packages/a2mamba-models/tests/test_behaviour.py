"""Model behaviour users rely on: small maps, precision modes, memory formats, compile, checkpointing, errors, CLI."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from a2mamba_models import A2Mamba, branch_windows
from a2mamba_models.cli import main as cli_main
from a2mamba_models.geometry import crop_bias
from a2mamba_ops import na2d_qk


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return timm.create_model("a2mamba_test").eval()


# ----------------------------------------------------------------------------- small maps


def test_windows_unchanged_where_the_reference_runs():
    w = branch_windows(56, 56, 11)
    assert w.kernel == (11, 11) and w.dilation1 == (1, 1) and w.dilation2 == (5, 5) and not w.shrunk
    w = branch_windows(8, 10, 3)
    assert w.kernel == (3, 3) and w.dilation2 == (2, 3)
    w = branch_windows(7, 7, 7)
    assert w.kernel == (7, 7) and w.dilation2 == (1, 1)


def test_windows_shrink_per_axis_to_the_largest_odd_size_that_fits():
    w = branch_windows(6, 8, 7)
    assert w.kernel == (5, 7) and w.dilation1 == (1, 1) and w.dilation2 == (1, 1) and w.shrunk
    assert branch_windows(2, 2, 7).kernel == (1, 1)
    assert branch_windows(4, 4, 7).kernel == (3, 3)
    assert branch_windows(5, 40, 11).kernel == (5, 11)


def test_shrunk_window_reads_the_bias_of_the_same_relative_offsets():
    """On a 5x5 map with K = 7 every query sees the whole map: logit = q.k + bias[offset]."""
    K, H, W = 7, 5, 5
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, H, W, 4).double().unbind(0)
    table = torch.randn(1, 2 * K - 1, 2 * K - 1).double()
    windows = branch_windows(H, W, K)
    logits = na2d_qk(q, k, windows.kernel, windows.dilation1, crop_bias(table, windows)).reshape(1, H, W, H, W)
    for i in range(H):
        for j in range(W):
            for a in range(H):
                for b in range(W):
                    expected = (q[0, 0, i, j] * k[0, 0, a, b]).sum() + table[0, K - 1 + a - i, K - 1 + b - j]
                    assert logits[0, i, j, a, b].item() == pytest.approx(expected.item(), abs=1e-12)


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (96, 128), (33, 47)])
def test_runs_below_the_reference_minimum_size(tiny, size):
    with torch.no_grad():
        assert torch.isfinite(tiny(torch.randn(1, 3, *size))).all()


# ----------------------------------------------------------------------------- precision / layout


def test_float64_model_runs(tiny):
    model = timm.create_model("a2mamba_test").eval().double()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


def test_bfloat16_autocast_is_close_to_float32(tiny):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = tiny(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = tiny(x)
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3


def test_pure_bfloat16_model_runs(tiny):
    model = timm.create_model("a2mamba_test").eval()
    model.load_state_dict(tiny.state_dict())
    model = model.bfloat16()
    assert model.stages[0].rope.angle.dtype == torch.float32  # positions * angle must not round to bfloat16
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_channels_last_input_gives_the_same_output(tiny):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(tiny(x.contiguous(memory_format=torch.channels_last)), tiny(x), atol=1e-6, rtol=1e-5)


def test_channels_last_weights_give_the_same_output():
    model = timm.create_model("a2mamba_test").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        assert torch.allclose(model(x), expected, atol=1e-6, rtol=1e-5)


def test_torch_compile_full_graph_matches_eager(tiny):
    """fullgraph=True: any graph break (in the model or in the ops' dispatch) is an error.

    dynamo traces with fake tensors, so the ops' fake kernels are exercised too; the
    "eager" compiler backend keeps the test cheap (no code generation).
    """
    x = torch.randn(2, 3, 64, 64)
    compiled = torch.compile(tiny, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), tiny(x), atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()


# ----------------------------------------------------------------------------- training


def test_gradient_checkpointing_gives_the_same_gradients_and_statistics():
    def run(checkpointing: bool):
        torch.manual_seed(0)
        model = timm.create_model("a2mamba_test", drop_path_rate=0.1).train()
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(1)
        x = torch.randn(4, 3, 32, 32, requires_grad=True)
        model(x).square().sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        stats = {n: b.clone() for n, b in model.named_buffers() if "running" in n or "num_batches" in n}
        return x.grad, grads, stats

    x_ref, g_ref, s_ref = run(False)
    x_ck, g_ck, s_ck = run(True)
    assert torch.allclose(x_ck, x_ref, atol=1e-6, rtol=1e-5)
    for name in g_ref:
        assert torch.allclose(g_ck[name], g_ref[name], atol=1e-6, rtol=1e-5), name
    for name in s_ref:  # the recomputation must not count the batch a second time
        assert torch.equal(s_ck[name], s_ref[name]), name


def test_shared_bias_table_stays_one_parameter_through_training():
    torch.manual_seed(0)
    model = timm.create_model("a2mamba_test").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    state = model.state_dict()
    key = "layers.0.blocks.0.token_mixer.rpb"
    assert state[f"{key}.0"].abs().sum() > 0
    assert torch.equal(state[f"{key}.0"], state[f"{key}.1"])


def test_constructor_accepts_reference_arguments():
    model = A2Mamba(
        image_size=224,
        in_chans=1,
        num_classes=3,
        embed_dims=[16, 32, 48, 64],
        depths=[1, 1, 1, 1],
        num_heads=[2, 2, 2, 4],
        window_size=[3, 3, 3, 3],
        window_dilation=[1, 1, 1, 1],
        mlp_ratios=[2, 2, 2, 2],
        layerscales=[True, False, False, False],
        resscales=[False, True, False, False],
        layer_init_values=[0.5, 1, 1, 1],
        use_rpb=False,
        drop_path_rate=0.1,
        projection=32,
        use_checkpoint=[1, 0, 0, 0],
    )
    assert not any(".rpb." in k for k in model.state_dict())
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_give_clear_errors(tiny):
    with pytest.raises(ValueError, match="in_chans=3"):
        tiny(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        tiny(torch.randn(1, 3, 31, 64))
    with pytest.raises(TypeError, match="floating-point"):
        tiny(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match="float64 but the model's weights are torch.float32"):
        tiny(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        tiny(torch.randn(3, 64, 64))


def test_bad_constructor_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="depths must have one entry per stage"):
        A2Mamba(depths=[1, 1, 1])
    with pytest.raises(ValueError, match="num_heads must be even"):
        A2Mamba(embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 3, 4], depths=[1, 1, 1, 1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        A2Mamba(embed_dim=[16, 32, 48, 64])


# ----------------------------------------------------------------------------- CLI


def test_cli_info_json(capsys):
    assert cli_main(["info", "a2mamba_n", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 4_195_052
    assert result["gflops"] == pytest.approx(0.825, rel=0.03)


def test_cli_info_table_and_img_size(capsys):
    assert cli_main(["info", "a2mamba_t", "--img-size", "256", "320"]) == 0
    out = capsys.readouterr().out
    assert "15,365,506" in out and "256 x 320" in out
    with pytest.raises(SystemExit):
        cli_main(["info", "a2mamba_t", "--img-size", "16", "16"])
