"""Loading weights: accepted layouts, safety (weights_only), hashes, clear errors, offline hub."""

from __future__ import annotations

import pickle

import huggingface_hub
import huggingface_hub.constants
import pytest
import timm
import torch

import a2mamba_models
from a2mamba_models import CheckpointMismatch, PretrainedWeightsUnavailable, load_checkpoint, read_checkpoint
from a2mamba_models.pretrained import sha256_of


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(1)
    model = timm.create_model("a2mamba_test").eval()
    with torch.no_grad():  # non-trivial values everywhere, tied tables included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


LAYOUTS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 1},
    "model": lambda sd: {"model": sd, "optimizer": {}},
    "state_dict_ema": lambda sd: {"state_dict_ema": sd},
    "module_prefix": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "nested_module_prefix": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_accepted_layout_loads_through_timm_and_load_checkpoint(layout, source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(LAYOUTS[layout](source.state_dict()), path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
        via_timm = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
        assert torch.equal(via_timm.eval()(x), expected)
        fresh = timm.create_model("a2mamba_test").eval()
        load_checkpoint(fresh, path)
        assert torch.equal(fresh(x), expected)


def test_loading_keeps_the_bias_tables_tied(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model("a2mamba_test")
    load_checkpoint(model, path)
    model.load_state_dict(torch.load(path, weights_only=True), assign=True)
    for stage in model.stages:
        for block in stage.blocks:
            assert block.token_mixer.rpb[0] is block.token_mixer.rpb[1]


def test_sha256_is_checked_when_given(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model("a2mamba_test")
    load_checkpoint(model, path, sha256=sha256_of(path))
    with pytest.raises(CheckpointMismatch, match="SHA-256"):
        load_checkpoint(model, path, sha256="0" * 64)
    overlay = dict(file=str(path))
    timm.create_model(
        "a2mamba_test", pretrained=True, pretrained_cfg_overlay=overlay, pretrained_sha256=sha256_of(path)
    )
    with pytest.raises(CheckpointMismatch, match="SHA-256"):
        timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=overlay, pretrained_sha256="0" * 64)


def test_checkpoint_of_another_variant_names_missing_and_unexpected_keys(source, tmp_path):
    state = source.state_dict()
    del state["layers.0.blocks.0.cpe1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(1\): layers.0.blocks.0.cpe1.weight") as err:
        timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert "unexpected keys (1): extra.weight" in str(err.value)

    with pytest.raises(CheckpointMismatch, match="shape mismatches"):
        with torch.device("meta"):
            model = timm.create_model("a2mamba_test", embed_dims=[16, 32, 64, 128])
        a2mamba_models.checkpoint_filter_fn(source.state_dict(), model)


def test_truncated_file_is_a_clear_error(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointMismatch, match="truncated or corrupt"):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_checkpoint(tmp_path / "absent.pth")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointMismatch, match="refusing to load"):
        read_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_differing_tied_tables_are_rejected(source, tmp_path):
    state = source.state_dict()
    key = "layers.0.blocks.0.token_mixer.rpb.1"
    state[key] = state[key] + 1.0
    model = timm.create_model("a2mamba_test")
    with pytest.raises(RuntimeError, match="must be equal"):
        model.load_state_dict(state)
    with pytest.raises(RuntimeError, match="must be equal"):
        model.load_state_dict(state, strict=False)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatch, match="must be equal"):
        load_checkpoint(model, path)


def test_pretrained_with_other_num_classes_or_in_chans_adapts_head_and_stem(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    overlay = dict(file=str(path))
    model = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=3).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert torch.equal(model.state_dict()["classifier.0.weight"], source.state_dict()["classifier.0.weight"])
    gray = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=overlay, in_chans=1).eval()
    assert gray(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    features = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=overlay, features_only=True)
    features.eval()
    assert len(features(torch.randn(1, 3, 32, 32))) == 4


def test_global_bias_table_is_resized_for_another_image_size(source, tmp_path):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), img_size=96)
    assert model.stages[3].blocks[0].token_mixer.rpb[2].shape == (1, 4, 9, 9)


@pytest.fixture
def hub_calls(monkeypatch):
    """Record every hf_hub_download call; the real one still runs."""
    calls = []
    real = huggingface_hub.hf_hub_download

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    return calls


def test_offline_hub_fails_fast_with_instructions(monkeypatch, tmp_path, hub_calls):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        timm.create_model("a2mamba_t", pretrained=True, cache_dir=str(tmp_path))
    # Only the local cache was consulted: no network attempt, hence no retry loop.
    assert hub_calls and all(call.get("local_files_only") for call in hub_calls)
    message = str(err.value)
    assert "a2mamba_pretrained_weights/a2mamba_tiny.pth" in message
    assert "LMMM2025/A2Mamba" in message and "pretrained_cfg_overlay=dict(file=" in message


def test_unreachable_hub_fails_with_instructions(monkeypatch, tmp_path, hub_calls):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port
    with pytest.raises(PretrainedWeightsUnavailable, match="not reachable") as err:
        timm.create_model("a2mamba_n", pretrained=True, cache_dir=str(tmp_path))
    assert all(call.get("local_files_only") for call in hub_calls)  # the probe failed; no download was tried
    assert "a2mamba_pretrained_weights/a2mamba_nano.pth" in str(err.value)


def test_weights_in_the_hub_cache_are_used_offline(monkeypatch, tmp_path, source):
    """A file already in the cache loads with HF_HUB_OFFLINE set (no network needed)."""
    calls = []

    def cached(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("local_files_only")))
        path = tmp_path / "cached.pth"
        torch.save(source.state_dict(), path)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    path = a2mamba_models.pretrained.download_from_hub("a2mamba_test", "org/repo", "weights.pth")
    assert calls == [("org/repo", "weights.pth", True)]
    fresh = timm.create_model("a2mamba_test").eval()
    load_checkpoint(fresh, path)
