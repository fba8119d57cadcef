"""Bad input stops a run at once with a clear message and a non-zero exit, before any work is lost."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import SMALL_RUN, run_cli, save_training_checkpoint

from a2mamba_train import __version__
from a2mamba_train.cli import train_main, validate_main


def train(capsys, *args: str) -> tuple[int, str]:
    code = train_main([*SMALL_RUN, *args])
    return code, capsys.readouterr().err


def test_missing_data_dir(tmp_path, capsys):
    code, err = train(capsys, "--data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "run"))
    assert code == 2
    assert "--data-dir" in err and "nowhere" in err and "does not exist" in err


def test_data_dir_without_class_folders(tmp_path, capsys):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    code, err = train(capsys, "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "run"))
    assert code == 2 and "is empty" in err and "one sub-folder of images per class" in err


def test_class_folders_without_images(tmp_path, capsys):
    for split in ("train", "val"):
        (tmp_path / "data" / split / "a").mkdir(parents=True)
    code, err = train(capsys, "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "run"))
    assert code == 2 and "no images" in err


def test_corrupt_image_is_named_before_training_starts(image_folder, tmp_path, capsys):
    bad = image_folder / "train" / "circle" / "007.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    run = tmp_path / "run"
    code, err = train(capsys, "--data-dir", str(image_folder), "--output", str(run))
    assert code == 2
    assert "corrupt or unreadable image" in err and str(bad) in err
    assert not list(run.glob("*.pth"))


def test_corrupt_image_found_while_loading_stops_the_run(image_folder, tmp_path, capsys):
    # with the up-front check off, the loader reports the file instead of skipping it silently
    bad = image_folder / "train" / "square" / "003.png"
    bad.write_bytes(b"garbage")
    code, err = train(
        capsys,
        "--data-dir",
        str(image_folder),
        "--output",
        str(tmp_path / "run"),
        "--verify-images",
        "none",
        "--workers",
        "1",
    )
    assert code == 2 and "corrupt or unreadable image" in err and "003.png" in err


def test_unknown_recipe_lists_the_known_ones(capsys):
    code = train_main(["--recipe", "tinny", "--print-config"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown recipe 'tinny'" in err and "a2mamba_t-imagenet" in err and "fashion-mnist" in err


def test_unknown_model_suggests_close_names(image_folder, tmp_path, capsys):
    code, err = train(
        capsys, "--data-dir", str(image_folder), "--output", str(tmp_path / "run"), "--model", "a2mamba_tt"
    )
    assert code == 2 and "unknown model 'a2mamba_tt'" in err and "a2mamba_t" in err


def test_bad_setting_value(capsys):
    code = train_main(["--recipe", "a2mamba_t-imagenet", "--epochs", "ten", "--print-config"])
    assert code == 2 and "epochs: expected an integer" in capsys.readouterr().err


def test_unwritable_output_folder(image_folder, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = train(capsys, "--data-dir", str(image_folder), "--output", str(blocker / "run"))
    assert code == 2 and "cannot write to the run folder" in err


def test_existing_run_is_not_overwritten(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pth").write_bytes(b"precious")
    code, err = train(capsys, "--data-dir", str(image_folder), "--output", str(run))
    assert code == 2 and "already holds a run" in err and "--resume auto" in err
    assert (run / "last.pth").read_bytes() == b"precious"


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path, capsys):
    code = train_main(
        [
            "--recipe",
            "fashion-mnist-quick",
            "--data-dir",
            str(tmp_path / "none"),
            "--output",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Fashion-MNIST not found" in err and "apt-get install dataset-fashion-mnist" in err


def test_validate_errors(image_folder, tmp_path, capsys):
    assert validate_main(["--model", "a2mamba_test", "--checkpoint", str(tmp_path / "x.pth"), str(image_folder)]) == 2
    assert "no file" in capsys.readouterr().err
    assert validate_main(["--model", "nope_net", "--checkpoint", str(tmp_path / "x.pth"), str(image_folder)]) == 2
    assert "unknown model 'nope_net'" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    assert validate_main(["--model", "a2mamba_test", "--checkpoint", str(junk), str(tmp_path / "missing")]) == 2
    assert "is not a PyTorch checkpoint" in capsys.readouterr().err


def test_console_script_exits_non_zero_in_a_real_process(tmp_path):
    result = run_cli("--recipe", "nope")
    assert result.returncode == 2 and "unknown recipe" in result.stderr
    result = run_cli("--model", "a2mamba_test", str(tmp_path), "--pretrained", module="a2mamba_train.validate")
    assert result.returncode == 2 and "DIR" in result.stderr and "is empty" in result.stderr


def test_validate_refuses_pretrained_weights_that_do_not_exist(image_folder, capsys):
    code = validate_main(["--model", "a2mamba_test", "--pretrained", str(image_folder)])
    assert code == 2 and "no pretrained weights" in capsys.readouterr().err


def single_line(code: int, stderr: str) -> str:
    """A user error: exit status 2 and one line on stderr, no traceback."""
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def one_line_error(result) -> str:
    """The same, in a real process (for what only a fresh interpreter shows, such as environment variables)."""
    return single_line(result.returncode, result.stderr)


def one_line_in_process(capsys, main, args: list[str]) -> str:
    """The same, in this process: main() must catch the error itself (an exception would fail the test)."""
    code = main(args)
    return single_line(code, capsys.readouterr().err)


@pytest.mark.parametrize("main, prog", [(train_main, "a2mamba-train"), (validate_main, "a2mamba-validate")])
def test_every_cli_reports_its_version(main, prog, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"{prog} {__version__}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu(image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(run)]
    args[args.index("--device") + 1] = "cuda"
    assert train_main(args) == 2
    assert "--device cuda: no CUDA device" in capsys.readouterr().err
    assert not run.exists()
    checkpoint = tmp_path / "model.pth"
    save_training_checkpoint(checkpoint)
    assert validate_main(["--checkpoint", str(checkpoint), "--device", "cuda", str(image_folder)]) == 2
    assert "--device cuda: no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("content", [os.urandom(4096), b"epoch,top1\n1,50.0\n", b""], ids=["random", "text", "empty"])
def test_a_file_that_is_no_checkpoint_is_one_line(content, image_folder, tmp_path, capsys):
    junk = tmp_path / "weights.pth"
    junk.write_bytes(content)
    line = one_line_in_process(capsys, validate_main, ["--checkpoint", str(junk), str(image_folder)])
    assert "--checkpoint" in line and "is not a PyTorch checkpoint" in line and str(junk) in line
    run = tmp_path / "run"
    run_args = [*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(run)]
    line = one_line_in_process(capsys, train_main, [*run_args, "--resume", str(junk)])
    assert "--resume" in line and "is not a PyTorch checkpoint" in line
    line = one_line_in_process(capsys, train_main, [*run_args, "--initial-checkpoint", str(junk)])
    assert "--initial-checkpoint" in line and "is not a PyTorch checkpoint" in line
    assert not run.exists()


def test_resume_from_a_weights_only_file_points_to_initial_checkpoint(image_folder, tmp_path, capsys):
    weights = tmp_path / "weights.pth"
    torch.save(save_training_checkpoint(tmp_path / "full.pth")["model"], weights)
    code, err = train(
        capsys, "--data-dir", str(image_folder), "--output", str(tmp_path / "run"), "--resume", str(weights)
    )
    assert code == 2 and "not a checkpoint of a2mamba-train" in err and "--initial-checkpoint" in err


def test_checkpoint_of_another_model(image_folder, tmp_path, capsys):
    trained = tmp_path / "trained.pth"
    state = save_training_checkpoint(trained)
    args = ["--model", "a2mamba_n", "--checkpoint", str(trained), str(image_folder)]
    line = one_line_in_process(capsys, validate_main, args)
    assert "holds weights of a2mamba_test, not a2mamba_n" in line and "--model a2mamba_test" in line
    bare = tmp_path / "bare.pth"  # a published-style state dict says nothing about its model
    torch.save(state["model"], bare)
    line = one_line_in_process(
        capsys, validate_main, ["--model", "a2mamba_n", "--checkpoint", str(bare), str(image_folder)]
    )
    assert "--checkpoint" in line and "does not fit this model" in line and "missing" in line


def test_pretrained_offline_names_the_hf_cli(image_folder, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    line = one_line_error(
        run_cli("--model", "a2mamba_n", "--pretrained", str(image_folder), module="a2mamba_train.validate", env=env)
    )
    assert "--pretrained: cannot get the published weights of a2mamba_n" in line
    assert "hf download LMMM2025/A2Mamba" in line and "huggingface-cli" not in line and "--checkpoint FILE" in line


def test_pretrained_offline_in_training_names_the_option_for_a_local_file(image_folder, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = tmp_path / "run"
    args = [*SMALL_RUN, "--model", "a2mamba_n", "--pretrained", "--data-dir", str(image_folder), "--output", str(run)]
    line = one_line_error(run_cli(*args, env=env))
    assert "hf download LMMM2025/A2Mamba" in line and "--initial-checkpoint FILE" in line
    assert not run.exists()


def test_failed_launch_leaves_no_empty_run_folder(image_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = image_folder / "val" / "circle" / "001.png"
    bad.write_bytes(b"not an image")
    assert train_main([*SMALL_RUN, "--data-dir", str(image_folder)]) == 2  # default folder: runs/<model>-<time>
    assert "corrupt or unreadable image" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    nested = tmp_path / "out" / "deeper" / "run"
    assert train_main([*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(nested)]) == 2
    assert not (tmp_path / "out").exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    assert train_main([*SMALL_RUN, "--data-dir", str(image_folder), "--output", str(kept)]) == 2
    assert kept.is_dir()  # a folder the user made stays
