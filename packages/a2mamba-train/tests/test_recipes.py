"""The shipped recipes hold the published settings, and the CLI resolves and overrides them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm
from conftest import run_cli

from a2mamba_train import ResolvedConfig, build_config, load_recipe, recipe_names, resolve
from a2mamba_train.config import DEPRECATED_RECIPE_NAMES, ConfigError
from a2mamba_train.modelling import create_optimizer

# training-recipes.md, "Shared by all five"
SHARED = dict(
    opt="adamw",
    weight_decay=0.05,
    sched="cosine",
    epochs=300,
    cooldown_epochs=10,
    warmup_lr=1e-6,
    min_lr=1e-5,
    clip_grad=5.0,
    clip_mode="norm",
    amp="float16",
    img_size=224,
    scale=[0.08, 1.0],
    train_interpolation="random",
    hflip=0.5,
    auto_augment="rand-m9-mstd0.5-inc1",
    reprob=0.25,
    remode="pixel",
    recount=1,
    cutmix=1.0,
    mixup_prob=1.0,
    mixup_switch_prob=0.5,
    mixup_mode="batch",
    smoothing=0.1,
    seed=42,
    keep_best=5,
    batch_size=256,
    sched_on_updates=False,
    distill_start_epoch=75,
)
# training-recipes.md, "Per model"
PER_MODEL = {
    "a2mamba_n-imagenet": dict(
        model="a2mamba_n",
        base_lr=4e-3,
        auto_lr=False,
        drop_path=0.0,
        warmup_epochs=5,
        model_ema=False,
        distill_weight=0.0,
        grad_checkpointing=[0, 0, 0, 0],
        mixup=0.1,
        color_jitter=0.0,
    ),
    "a2mamba_t-imagenet": dict(
        model="a2mamba_t",
        base_lr=1e-3,
        auto_lr=True,
        drop_path=0.1,
        warmup_epochs=5,
        model_ema=True,
        model_ema_decay=0.99984,
        distill_weight=1.0,
        grad_checkpointing=[0, 0, 0, 0],
        mixup=0.8,
        color_jitter=0.4,
    ),
    "a2mamba_s-imagenet": dict(
        model="a2mamba_s",
        base_lr=1e-3,
        auto_lr=True,
        drop_path=0.2,
        warmup_epochs=5,
        model_ema=True,
        model_ema_decay=0.9999,
        distill_weight=1.0,
        grad_checkpointing=[0, 0, 0, 0],
        mixup=0.8,
        color_jitter=0.4,
    ),
    "a2mamba_b-imagenet": dict(
        model="a2mamba_b",
        base_lr=1e-3,
        auto_lr=True,
        drop_path=0.4,
        warmup_epochs=20,
        model_ema=True,
        model_ema_decay=0.9999,
        distill_weight=1.5,
        grad_checkpointing=[4, 0, 0, 0],
        mixup=0.8,
        color_jitter=0.4,
    ),
    "a2mamba_l-imagenet": dict(
        model="a2mamba_l",
        base_lr=1e-3,
        auto_lr=True,
        drop_path=0.5,
        warmup_epochs=20,
        model_ema=True,
        model_ema_decay=0.9999,
        distill_weight=2.0,
        grad_checkpointing=[4, 4, 0, 0],
        mixup=0.8,
        color_jitter=0.4,
    ),
}


def test_every_published_model_has_a_recipe_named_after_it():
    assert set(PER_MODEL) <= set(recipe_names())
    for name, settings in PER_MODEL.items():
        assert name == f"{settings['model']}-imagenet"


@pytest.mark.parametrize("old, new", sorted(DEPRECATED_RECIPE_NAMES.items()))
def test_old_recipe_names_still_work_with_a_note(old, new, capsys):
    config = build_config({"recipe": old})
    assert config.recipe == new  # the run folder and config.json carry the current name
    assert config == build_config({"recipe": new})
    assert capsys.readouterr().err.count(f"recipe {old!r} is now called {new!r}") == 1


def test_resolved_config_is_typed_and_frozen():
    resolved = resolve(build_config({"recipe": "a2mamba_t-imagenet"}), world_size=2)
    assert isinstance(resolved, ResolvedConfig) and isinstance(resolved.lr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.lr = 1.0


@pytest.mark.parametrize("name", sorted(PER_MODEL))
def test_recipe_holds_the_published_settings(name):
    config = build_config({"recipe": name})
    for key, expected in {**SHARED, **PER_MODEL[name]}.items():
        assert getattr(config, key) == pytest.approx(expected), key
    assert config.ratio == pytest.approx([3 / 4, 4 / 3])
    assert timm.is_model(config.model)


@pytest.mark.parametrize("name", sorted(PER_MODEL))
def test_published_launch_resolves_to_published_lr(name):
    # 8 GPUs x 256 images = 2048: auto-lr gives 1e-3 * 2048 / 1024; nano keeps its fixed 4e-3
    resolved = resolve(build_config({"recipe": name}), world_size=8)
    assert resolved.global_batch_size == 2048
    assert resolved.lr == pytest.approx(4e-3 if name == "a2mamba_n-imagenet" else 2e-3)
    assert resolved.total_epochs == 310


def test_auto_lr_follows_world_size_and_batch():
    assert resolve(build_config({"recipe": "a2mamba_t-imagenet"}), world_size=1).lr == pytest.approx(2.5e-4)
    assert resolve(
        build_config({"recipe": "a2mamba_t-imagenet", "batch_size": "128"}), world_size=4
    ).lr == pytest.approx(5e-4)
    # an explicit lr is used as given
    assert resolve(build_config({"recipe": "a2mamba_t-imagenet", "lr": "3e-3"}), world_size=8).lr == pytest.approx(3e-3)


def test_print_config_prints_resolved_json_for_the_actual_world_size():
    result = run_cli(
        "--recipe",
        "a2mamba_s-imagenet",
        "--batch-size",
        "128",
        "--drop-path",
        "0.3",
        "--no-model-ema",
        "--distill-weight",
        "0",
        "--grad-checkpointing",
        "1",
        "2",
        "0",
        "0",
        "--print-config",
        env={"WORLD_SIZE": "4"},
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["world_size"] == 4 and printed["global_batch_size"] == 512
    assert printed["lr"] == pytest.approx(1e-3 * 512 / 1024)
    assert printed["drop_path"] == 0.3 and printed["model_ema"] is False
    assert printed["grad_checkpointing"] == [1, 2, 0, 0]
    assert printed["weight_decay"] == 0.05  # untouched settings keep the recipe's values


def test_custom_recipe_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "a2mamba_test"\n[optimizer]\nbase_lr = 0.01\nauto_lr = false\n')
    resolved = resolve(build_config({"recipe": str(path)}), world_size=2)
    assert resolved.model == "a2mamba_test" and resolved.lr == pytest.approx(0.01)


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate = 1.0\n", "unknown setting 'learning_rate'"),
        ("epochs = 'many'\n", "epochs: expected an integer"),
        ("epochs = [\n", "not valid TOML"),
    ],
)
def test_bad_recipe_file_is_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(path))


def test_self_distillation_requires_the_ema_model():
    with pytest.raises(ConfigError, match="--model-ema"):
        build_config({"recipe": "a2mamba_t-imagenet", "model_ema": "false"})


def test_weight_decay_grouping_follows_the_published_runs():
    model = timm.create_model("a2mamba_test", num_classes=10, image_size=32)
    resolved = resolve(build_config({"recipe": "a2mamba_t-imagenet", "model": "a2mamba_test"}), world_size=1)
    optimizer = create_optimizer(model, resolved)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    exempt = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert type(optimizer).__name__ == "AdamW"
    assert any(n.endswith("A_logs") for n in decayed)  # (C, 1): decays
    assert any(".rpb." in n or n.endswith("rpb.0") for n in decayed)  # bias tables decay
    assert any(n.endswith(".Ds") for n in exempt) and any(n.endswith(".bias") for n in exempt)
    assert all(p.ndim <= 1 for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"])
    assert all(p.ndim > 1 for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"])
