"""Using checkpoints across runs: validation at any size with class names, fine-tuning from a file,
and extending a finished schedule."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
from conftest import SMALL_RUN, make_image_folder, read_rows, save_training_checkpoint

import a2mamba_models  # noqa: F401 - registers the A2Mamba models with timm
from a2mamba_train.cli import train_main, validate_main


def test_validate_at_another_size_resizes_the_bias_tables(image_folder, tmp_path, capsys):
    checkpoint = tmp_path / "trained-at-32.pth"
    state = save_training_checkpoint(checkpoint, img_size=32)
    results = tmp_path / "results.json"
    code = validate_main(
        ["--checkpoint", str(checkpoint), "--img-size", "64", "--results-file", str(results), str(image_folder)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stats = json.loads(results.read_text())
    assert stats["model"] == "a2mamba_test" and stats["img_size"] == 64 and stats["count"] == 16
    # the class names stored in the checkpoint label the per-class results and the printed summary
    assert set(stats["class_top1"]) == {"circle", "square"}
    assert "weakest classes" in captured.out and "circle" in captured.out

    # the weights really are the checkpoint's, with the global tables resized as timm's loading does
    reference = timm.create_model(
        "a2mamba_test", pretrained=True, num_classes=2, image_size=64, pretrained_cfg_overlay=dict(file=str(checkpoint))
    )
    model = timm.create_model("a2mamba_test", num_classes=2, image_size=64)
    from a2mamba_train.weights import load_weights

    load_weights(model, state["model"], "checkpoint", "--checkpoint")
    for key, value in reference.state_dict().items():
        if key.startswith("classifier.4."):  # timm re-initialises a classifier for another class count
            assert torch.equal(model.state_dict()[key], state["model"][key]), key
        else:
            assert torch.equal(model.state_dict()[key], value), key
    assert any(state["model"][k].shape != v.shape for k, v in reference.state_dict().items() if k.endswith("rpb.2"))


def test_validate_refuses_folders_of_other_classes(tmp_path, capsys):
    checkpoint = tmp_path / "model.pth"
    save_training_checkpoint(checkpoint, classes=("cat", "dog"))
    data = make_image_folder(tmp_path / "data", classes=("circle", "square"), train_per_class=1, val_per_class=2)
    assert validate_main(["--checkpoint", str(checkpoint), str(data)]) == 2
    assert "are not the classes" in capsys.readouterr().err


def _parameters(state: dict, model: str = "a2mamba_test") -> set[str]:
    names = {n for n, _ in timm.create_model(model, num_classes=2, image_size=32).named_parameters()}
    return {k for k in state if k in names}


def test_initial_checkpoint_fine_tunes_with_a_new_classifier(tmp_path, capsys):
    source = save_training_checkpoint(tmp_path / "pretrained.pth", classes=("a", "b"))
    data = make_image_folder(tmp_path / "data", classes=("x", "y", "z"), train_per_class=4, val_per_class=2)
    run = tmp_path / "run"
    args = [*SMALL_RUN, "--data-dir", str(data), "--output", str(run), "--epochs", "1", "--warmup-epochs", "0"]
    # lr 0: no step moves a weight, so the run ends with exactly the weights it started from
    args += ["--lr", "0", "--min-lr", "0", "--initial-checkpoint", str(tmp_path / "pretrained.pth")]
    code = train_main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (
        "starting from the weights in" in captured.out
        and "classifier (classifier.4) starts from scratch" in captured.out
    )
    tuned = torch.load(run / "last.pth", weights_only=True)
    assert tuned["num_classes"] == 3 and tuned["class_names"] == ["x", "y", "z"]
    for key in _parameters(source["model"]):
        if key.startswith("classifier.4."):
            assert tuned["model"][key].shape[0] == 3
        else:
            assert torch.equal(tuned["model"][key], source["model"][key]), key


def test_initial_checkpoint_of_another_model_is_refused(image_folder, tmp_path, capsys):
    save_training_checkpoint(tmp_path / "other.pth", model="a2mamba_test")
    state = torch.load(tmp_path / "other.pth", weights_only=True)
    del state["model"]["patch_embed.0.weight"]
    torch.save(state, tmp_path / "other.pth")
    run = tmp_path / "run"
    code = train_main(
        [
            *SMALL_RUN,
            "--data-dir",
            str(image_folder),
            "--output",
            str(run),
            "--initial-checkpoint",
            str(tmp_path / "other.pth"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--initial-checkpoint" in err and "1 missing (patch_embed.0.weight)" in err
    assert not run.exists()


def test_resume_with_more_epochs_extends_the_schedule(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    schedule = ["--epochs", "1", "--warmup-epochs", "0", "--cooldown-epochs", "0", "--lr", "1e-3", "--min-lr", "1e-5"]
    assert train_main([*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(run), *schedule]) == 0
    capsys.readouterr()
    assert train_main(["--resume", "auto", "--output", str(run), "--epochs", "3", "--no-progress"]) == 0
    assert "at epoch 1 of 3" in capsys.readouterr().out
    rows = read_rows(run, "epoch")
    assert [r["epoch"] for r in rows] == [1, 2, 3]

    # cosine over the new 3 epochs from where the run stopped, not the old 1-epoch schedule's floor
    def cosine(epoch: int) -> float:
        return 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * epoch / 3))

    assert rows[1]["lr"] == pytest.approx(cosine(1)) and rows[2]["lr"] == pytest.approx(cosine(2))
    assert torch.load(run / "last.pth", weights_only=True)["epoch"] == 3
