"""Every registered variant, timm style: structure, counts, forward/backward, features, heads, weights.

Full-size models are built on the meta device wherever only structure matters
(keys, shapes, parameter and FLOP counts), which costs no memory or init time.
Forward/backward runs use the full nano/tiny models and, for the larger
variants, the same widths/heads/windows with one block per stage (the per-block
code is identical; only the repetition count differs), at small inputs.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch

from a2mamba_models import A2Mamba, PretrainedWeightsUnavailable, count_flops, count_params
from a2mamba_models.variants import CROP_PCT, PUBLISHED, VARIANT_ARGS

EXPECTED_PARAMS = dict(
    a2mamba_n=4_195_052, a2mamba_t=15_365_506, a2mamba_s=30_672_834, a2mamba_b=51_134_464, a2mamba_l=93_737_376
)
FVCORE_GFLOPS = dict(a2mamba_n=0.825, a2mamba_t=2.712, a2mamba_s=5.389, a2mamba_b=11.458, a2mamba_l=17.436)
FULL_DEPTH_RUN = ("a2mamba_n", "a2mamba_t")
SHALLOW = dict(depths=[1, 1, 1, 1])


@functools.cache
def _meta_model_cached(name: str) -> A2Mamba:
    with torch.device("meta"):
        return timm.create_model(name)


def meta_model(name: str, **kwargs) -> A2Mamba:
    """The full-size variant without storage (structure only); shared between read-only tests."""
    if not kwargs:
        return _meta_model_cached(name)
    with torch.device("meta"):
        return timm.create_model(name, **kwargs)


def runnable_model(name: str, **kwargs) -> A2Mamba:
    extra = {} if name in FULL_DEPTH_RUN else SHALLOW
    torch.manual_seed(0)
    return timm.create_model(name, **extra, **kwargs)


def read_key_table(path) -> dict[str, tuple[tuple[int, ...], str]]:
    rows = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, kind = line.split("\t")
        rows[key] = (() if shape == "scalar" else tuple(int(s) for s in shape.split("x")), kind)
    return rows


@pytest.mark.parametrize("name", PUBLISHED)
def test_state_dict_keys_and_shapes_match_published_checkpoint(name, key_tables):
    expected = read_key_table(key_tables / f"{name}.tsv")
    model = meta_model(name)
    state = model.state_dict()
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v[0] for k, v in expected.items()}
    buffers = dict(model.named_buffers())
    assert {k for k, v in expected.items() if v[1] == "buffer"} == set(buffers)


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_count_equals_reference(name):
    model = meta_model(name)
    assert count_params(model) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", PUBLISHED)
def test_flops_at_224_match_fvcore_count_of_reference(name):
    gflops = count_flops(meta_model(name), (224, 224)).total / 1e9
    assert gflops == pytest.approx(FVCORE_GFLOPS[name], rel=0.03)


@pytest.mark.parametrize("name", PUBLISHED)
def test_bias_tables_are_tied_in_every_block(name):
    model = meta_model(name)
    for stage in model.stages:
        for block in stage.blocks:
            tables = block.token_mixer.rpb
            assert tables[0] is tables[1]


@pytest.mark.parametrize("name", PUBLISHED)
def test_pretrained_cfg(name):
    cfg = meta_model(name).pretrained_cfg
    size = dict(a2mamba_n="nano", a2mamba_t="tiny", a2mamba_s="small", a2mamba_b="base", a2mamba_l="large")[name]
    assert cfg["hf_hub_id"] == "LMMM2025/A2Mamba"
    assert cfg["hf_hub_filename"] == f"a2mamba_pretrained_weights/a2mamba_{size}.pth"
    assert cfg["crop_pct"] == CROP_PCT[name]
    assert cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["classifier"] == "classifier.4" and cfg["num_classes"] == 1000


@pytest.mark.parametrize("name", PUBLISHED)
def test_drop_path_rate_rises_linearly_over_all_blocks(name):
    model = meta_model(name, drop_path_rate=0.3)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in model.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert all(a < b for a, b in zip(rates[:-1], rates[1:], strict=True))


@pytest.mark.parametrize("name", PUBLISHED)
def test_forward_backward_at_small_inputs(name):
    model = runnable_model(name, num_classes=10)
    for shape in ((1, 3, 64, 64), (1, 3, 96, 128)):
        x = torch.randn(shape, requires_grad=True)
        out = model(x)
        assert out.shape == (1, 10)
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", PUBLISHED)
def test_features_only_returns_four_stage_maps(name):
    extra = {} if name in FULL_DEPTH_RUN else SHALLOW
    model = timm.create_model(name, features_only=True, **extra).eval()
    dims = VARIANT_ARGS[name]["embed_dims"]
    assert model.feature_info.channels() == dims
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 96))
    strides = (4, 8, 16, 32)
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in zip(dims, strides, strict=True)]

    picked = timm.create_model(name, features_only=True, out_indices=(1, 3), **extra)
    assert picked.feature_info.channels() == [dims[1], dims[3]]


@pytest.mark.parametrize("name", PUBLISHED)
def test_heads_forward_features_and_reset_classifier(name):
    model = runnable_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, VARIANT_ARGS[name]["embed_dims"][-1], 2, 2)
        assert model.forward_head(features, pre_logits=True).shape == (1, 1024)
        assert model(x).shape == (1, 1000)
        model.reset_classifier(5)
        assert model(x).shape == (1, 5)
        assert model.get_classifier().out_channels == 5
        model.reset_classifier(0)
        assert model(x).shape == (1, 1024)
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, features) and len(inter) == 4


@pytest.mark.parametrize("name", PUBLISHED)
def test_no_weight_decay_names_ssm_A_logs_and_Ds(name):
    model = meta_model(name)
    names = model.no_weight_decay()
    ssm_params = {n for n, _ in model.named_parameters() if n.endswith((".A_logs", ".Ds"))}
    assert names == ssm_params and len(names) == 2 * sum(VARIANT_ARGS[name]["depths"][:3])


@pytest.mark.parametrize("name", PUBLISHED)
def test_pretrained_from_local_file_round_trips(name, tmp_path):
    """Save a model's weights, create the variant with pretrained=True from that file: same function."""
    extra = {} if name in FULL_DEPTH_RUN else SHALLOW
    source = runnable_model(name).eval()
    layout = PUBLISHED.index(name)  # each variant exercises another accepted layout
    state = source.state_dict()
    payload = [
        state,
        {"state_dict": state},
        {"model": state, "epoch": 3},
        {"state_dict_ema": state},
        {f"module.{k}": v for k, v in state.items()},
    ][layout]
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **extra).eval()
    assert loaded.pretrained_cfg.get("state_dict") is None  # no second copy of the weights kept alive
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_test_variant_is_small_and_runs_at_32_and_64():
    model = timm.create_model("a2mamba_test")
    assert model.num_classes == 10 and count_params(model) < 500_000
    for size in (32, 64):
        x = torch.randn(4, 3, size, size)
        out = model(x)
        assert out.shape == (4, 10)
        out.sum().backward()
    with pytest.raises(PretrainedWeightsUnavailable, match="no pretrained weights"):
        timm.create_model("a2mamba_test", pretrained=True)
