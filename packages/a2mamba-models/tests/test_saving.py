"""Saving weights: safetensors, timm's hub layout (save_for_hf, push_to_hf_hub), `a2mamba-models convert`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import safetensors.torch
import timm
import timm.models._hub
import torch

from a2mamba_models import CheckpointMismatch, PretrainedWeightsUnavailable, read_checkpoint
from a2mamba_models.cli import main
from a2mamba_models.pretrained import _unavailable

RPB = "layers.0.blocks.0.token_mixer.rpb"


@pytest.fixture(scope="module")
def trained():
    """a2mamba_test with 7 classes and non-trivial weights everywhere (tied tables included)."""
    torch.manual_seed(3)
    model = timm.create_model("a2mamba_test", num_classes=7).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_dict_holds_both_published_keys_as_separate_equal_tensors(trained):
    state = trained.state_dict()
    first, second = state[f"{RPB}.0"], state[f"{RPB}.1"]
    assert torch.equal(first, second)
    assert first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    mixer = trained.layers[0].blocks[0].token_mixer
    assert mixer.rpb[0] is mixer.rpb[1]  # still one parameter in the model


def test_safetensors_save_file_round_trips_strictly(trained, tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(trained.state_dict(), str(path))
    fresh = timm.create_model("a2mamba_test", num_classes=7)
    fresh.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    assert _same_weights(fresh, trained)
    mixer = fresh.layers[0].blocks[0].token_mixer
    assert mixer.rpb[0] is mixer.rpb[1]


def test_safetensors_save_model_round_trips_strictly(trained, tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_model(trained, str(path))
    fresh = timm.create_model("a2mamba_test", num_classes=7)
    missing, unexpected = safetensors.torch.load_model(fresh, str(path), strict=True)
    assert not missing and not unexpected
    assert _same_weights(fresh, trained)


def test_save_for_hf_then_local_dir_loads_offline(trained, tmp_path, monkeypatch):
    folder = tmp_path / "hub"
    timm.models.save_for_hf(trained, str(folder), safe_serialization=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["architecture"] == "a2mamba_test"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert loaded.num_classes == 7 and _same_weights(loaded, trained)
    assert loaded.pretrained_cfg["source"] == "local-dir"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


class _LocalHub:
    """Stands in for huggingface_hub.HfApi: an "upload" copies the folder into a local directory."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, **kwargs):
        return self

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def file_exists(self, repo_id, filename, **kwargs):
        return False

    def upload_folder(self, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, self.root / repo_id)
        return str(self.root / repo_id)


def test_push_to_hf_hub_layout_loads_back_strictly(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(timm.models._hub, "HfApi", _LocalHub(tmp_path))
    timm.models.push_to_hf_hub(trained, "someone/a2mamba-test-7")
    folder = tmp_path / "someone" / "a2mamba-test-7"
    assert {"config.json", "model.safetensors", "pytorch_model.bin", "README.md"} <= {p.name for p in folder.iterdir()}
    for weights in ("model.safetensors", "pytorch_model.bin"):
        fresh = timm.create_model("a2mamba_test", num_classes=7)
        fresh.load_state_dict(read_checkpoint(folder / weights), strict=True)
        assert _same_weights(fresh, trained)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert _same_weights(loaded, trained)


def test_hub_layout_repository_is_read_through_the_hub_cache(trained, tmp_path, monkeypatch):
    """`hf-hub:` names point at a repository with model.safetensors; it is found in the cache offline."""
    timm.models.save_for_hf(trained, str(tmp_path), safe_serialization=True)
    asked = []

    def cached(repo_id, filename, **kwargs):
        asked.append(filename)
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    cfg = dict(hf_hub_id="someone/a2mamba-test-7", source="hf-hub", num_classes=7)
    loaded = timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg=cfg, num_classes=7)
    assert asked == ["model.safetensors"] and _same_weights(loaded, trained)


def test_convert_cli_writes_safetensors_that_load_strictly(trained, tmp_path, capsys):
    source = tmp_path / "train.pth"
    # A training checkpoint: torch.save keeps the tied keys in one storage, which safetensors refuses as such.
    torch.save({"model": trained.state_dict(), "epoch": 3}, source)
    target = tmp_path / "w.safetensors"
    assert main(["convert", str(source), str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    fresh = timm.create_model("a2mamba_test", num_classes=7)
    fresh.load_state_dict(safetensors.torch.load_file(str(target)), strict=True)
    assert _same_weights(fresh, trained)


def test_convert_cli_takes_the_ema_weights_when_asked(trained, tmp_path):
    source = tmp_path / "train.pth"
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    torch.save({"model": trained.state_dict(), "state_dict_ema": ema}, source)
    assert main(["convert", "--use-ema", str(source), str(tmp_path / "ema.safetensors")]) == 0
    written = safetensors.torch.load_file(str(tmp_path / "ema.safetensors"))
    assert torch.equal(written[f"{RPB}.0"], ema[f"{RPB}.0"])


@pytest.mark.parametrize("content", [bytes(range(256)) * 40, b"hello, not a checkpoint\n", b""])
def test_random_bytes_or_text_as_checkpoint_say_what_to_do(content, tmp_path, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointMismatch, match="not a PyTorch checkpoint or a safetensors file") as err:
        read_checkpoint(path)
    assert "Pass a file written by torch.save or safetensors" in str(err.value)
    with pytest.raises(CheckpointMismatch, match="not a PyTorch checkpoint"):
        timm.create_model("a2mamba_test", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and "not a PyTorch checkpoint" in err_lines[0]


def test_random_bytes_named_safetensors_say_what_to_do(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointMismatch, match="not a PyTorch checkpoint or a safetensors file"):
        read_checkpoint(path)


def test_folder_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        read_checkpoint(tmp_path)


def test_offline_hint_names_the_hf_command():
    message = str(_unavailable("a2mamba_t", "LMMM2025/A2Mamba", "a2mamba_pretrained_weights/a2mamba_tiny.pth", "x"))
    assert "`hf download LMMM2025/A2Mamba a2mamba_pretrained_weights/a2mamba_tiny.pth`" in message
    assert "huggingface-cli" not in message
    assert isinstance(_unavailable("a", "b", "c", "d"), PretrainedWeightsUnavailable)


def test_version_flag(capsys):
    import a2mamba_models

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"a2mamba-models {a2mamba_models.__version__}"
