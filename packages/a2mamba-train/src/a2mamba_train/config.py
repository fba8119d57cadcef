"""Training configuration: defaults, recipe files, command-line overrides and auto-lr.

A configuration is built in layers, each overriding the one before:
dataclass defaults <- recipe file (``--recipe``) <- the saved configuration of a
resumed run <- options given on the command line, and checked (``check_config``).
``resolve`` then derives what depends on the launch -- world size, global batch,
the learning rate after auto-lr scaling -- and returns a ``ResolvedConfig``: the
frozen, typed settings every other module reads by attribute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A setting, recipe or override that cannot be used; the message says which and why."""


FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
DATASETS = ("imagefolder", "fashion-mnist")
AMP_MODES = ("float16", "bfloat16", "off")
DEVICES = ("auto", "cpu", "cuda")
VERIFY_MODES = ("auto", "all", "none")


def _setting(default: Any, kind: str, help: str) -> Any:
    """A configuration field; ``kind`` says how text from a recipe or the command line is parsed."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"kind": kind, "help": help})
    return field(default=default, metadata={"kind": kind, "help": help})


@dataclass(frozen=True)
class TrainConfig:
    # --- run -----------------------------------------------------------------------------------
    recipe: str | None = _setting(None, "opt_str", "recipe the settings came from")
    output: str | None = _setting(None, "opt_str", "run folder (default runs/<recipe or model>-<time>)")
    resume: str | None = _setting(None, "opt_str", "checkpoint to resume from, or 'auto' for the run folder's latest")
    seed: int = _setting(42, "int", "random seed")
    deterministic: bool = _setting(False, "bool", "use deterministic algorithms only (bit-exact reruns on the CPU)")
    device: str = _setting("auto", "str", "auto, cpu or cuda")
    threads: int | None = _setting(None, "opt_int", "CPU threads per process for torch (default: torch's choice)")
    # --- model ---------------------------------------------------------------------------------
    model: str = _setting("a2mamba_t", "str", "timm model name")
    pretrained: bool = _setting(False, "bool", "start from the model's pretrained weights")
    initial_checkpoint: str | None = _setting(
        None, "opt_str", "start from the model weights in this file (fine-tuning; see the README)"
    )
    initial_checkpoint_strict: bool = _setting(
        True, "bool", "every weight of --initial-checkpoint must fit (the classifier may differ in classes)"
    )
    num_classes: int | None = _setting(None, "opt_int", "classes (default: from the dataset)")
    img_size: int = _setting(224, "int", "training and evaluation image size")
    drop_path: float = _setting(0.0, "float", "stochastic depth rate")
    grad_checkpointing: list[int] = _setting([0, 0, 0, 0], "ints", "blocks per stage recomputed in backward")
    sync_bn: bool = _setting(False, "bool", "convert BatchNorm to SyncBatchNorm (GPU only)")
    channels_last: bool = _setting(False, "bool", "keep activations in channels-last memory format")
    # --- data ----------------------------------------------------------------------------------
    dataset: str = _setting("imagefolder", "str", "imagefolder (train/ and val/ folders) or fashion-mnist")
    data_dir: str | None = _setting(None, "opt_str", "dataset root")
    train_split: str = _setting("train", "str", "training folder under the data root")
    val_split: str = _setting("val", "str", "validation folder under the data root")
    batch_size: int = _setting(256, "int", "images per process and step")
    workers: int | None = _setting(None, "opt_int", "data loader processes per rank (default: from the CPU count)")
    pin_memory: bool | None = _setting(None, "opt_bool", "pin host memory (default: on with CUDA)")
    verify_images: str = _setting("auto", "str", "check every image decodes before training: auto, all, none")
    # --- augmentation --------------------------------------------------------------------------
    aug: bool = _setting(True, "bool", "training augmentation (--no-aug: resize and centre crop only, no mixing)")
    scale: list[float] = _setting([0.08, 1.0], "floats", "RandomResizedCrop area range")
    ratio: list[float] = _setting([3 / 4, 4 / 3], "floats", "RandomResizedCrop aspect range")
    hflip: float = _setting(0.5, "float", "horizontal flip probability")
    train_interpolation: str = _setting("random", "str", "training resize interpolation")
    auto_augment: str | None = _setting("rand-m9-mstd0.5-inc1", "opt_str", "timm auto-augment policy or none")
    color_jitter: float = _setting(0.4, "float", "colour jitter strength")
    reprob: float = _setting(0.25, "float", "random erasing probability")
    remode: str = _setting("pixel", "str", "random erasing fill mode")
    recount: int = _setting(1, "int", "random erasing count")
    mixup: float = _setting(0.8, "float", "Mixup alpha (0 disables)")
    cutmix: float = _setting(1.0, "float", "CutMix alpha (0 disables)")
    mixup_prob: float = _setting(1.0, "float", "probability of mixing a batch")
    mixup_switch_prob: float = _setting(0.5, "float", "probability of CutMix when both are on")
    mixup_mode: str = _setting("batch", "str", "batch, pair or elem")
    smoothing: float = _setting(0.1, "float", "label smoothing")
    # --- evaluation ----------------------------------------------------------------------------
    crop_pct: float | None = _setting(None, "opt_float", "evaluation crop fraction (default: the model's)")
    eval_interpolation: str | None = _setting(None, "opt_str", "evaluation interpolation (default: the model's)")
    # --- optimisation --------------------------------------------------------------------------
    opt: str = _setting("adamw", "str", "timm optimizer name")
    base_lr: float = _setting(1e-3, "float", "recipe learning rate (per auto_lr_batch images if auto_lr)")
    auto_lr: bool = _setting(True, "bool", "scale base_lr by global_batch / auto_lr_batch")
    auto_lr_batch: int = _setting(1024, "int", "global batch that base_lr refers to")
    lr: float | None = _setting(None, "opt_float", "learning rate, used as is (overrides base_lr and auto-lr)")
    weight_decay: float = _setting(0.05, "float", "decoupled weight decay (not on norms, biases, 1-d params)")
    opt_eps: float | None = _setting(None, "opt_float", "optimizer epsilon (default: the library's)")
    opt_betas: list[float] | None = _setting(None, "opt_floats", "optimizer betas (default: the library's)")
    clip_grad: float | None = _setting(5.0, "opt_float", "gradient clipping threshold (none disables)")
    clip_mode: str = _setting("norm", "str", "norm, value or agc")
    sched: str = _setting("cosine", "str", "timm scheduler name")
    epochs: int = _setting(300, "int", "epochs of the schedule, without cooldown")
    cooldown_epochs: int = _setting(10, "int", "epochs at min_lr after the schedule")
    warmup_epochs: int = _setting(5, "int", "linear warmup epochs")
    warmup_lr: float = _setting(1e-6, "float", "learning rate at the start of warmup")
    min_lr: float = _setting(1e-5, "float", "learning rate floor")
    sched_on_updates: bool = _setting(False, "bool", "step the schedule every update instead of every epoch")
    max_steps_per_epoch: int | None = _setting(None, "opt_int", "cut every epoch short (quick checks)")
    amp: str = _setting("float16", "str", "mixed precision: float16 (with loss scaling), bfloat16 or off")
    # --- EMA and self-distillation -------------------------------------------------------------
    model_ema: bool = _setting(False, "bool", "keep an exponential moving average of the weights")
    model_ema_decay: float = _setting(0.9999, "float", "EMA decay per step")
    distill_weight: float = _setting(0.0, "float", "weight of the self-distillation loss from the EMA model")
    distill_start_epoch: int = _setting(75, "int", "first epoch with self-distillation")
    # --- bookkeeping ---------------------------------------------------------------------------
    keep_best: int = _setting(5, "int", "best checkpoints kept (by top-1), besides the last")
    nonfinite_patience: int = _setting(3, "int", "consecutive non-finite steps before falling back")
    nonfinite_max_restores: int = _setting(3, "int", "restores of the last good checkpoint before giving up")
    tensorboard: bool = _setting(False, "bool", "also log to TensorBoard (needs tensorboard installed)")
    progress: bool = _setting(True, "bool", "show progress bars")


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Fields that only say how to launch, never part of a recipe.
LAUNCH_ONLY = {"recipe", "output", "resume", "initial_checkpoint"}


# --------------------------------------------------------------------------------------------------
# parsing values
# --------------------------------------------------------------------------------------------------

_NONE_WORDS = {"none", "null", ""}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.lower() in _TRUE_WORDS
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _as_number(name: str, value: Any, number: type) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        parsed = number(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {'an integer' if number is int else 'a number'}, got {value!r}") from None
    if number is int and isinstance(value, float) and value != parsed:
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    return parsed


def _as_list(name: str, value: Any) -> list:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: expected a list, got {value!r}")
    return list(value)


def coerce(name: str, value: Any) -> Any:
    """Turn a recipe value or command-line text into the field's type, or raise ConfigError."""
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}")
    kind = FIELDS[name].metadata["kind"]
    optional = kind.startswith("opt_")
    base = kind[4:] if optional else kind
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
    if base == "bool":
        return _as_bool(name, value)
    if base == "int":
        return _as_number(name, value, int)
    if base == "float":
        return _as_number(name, value, float)
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected text, got {value!r}")
        return value
    if base == "ints":
        return [_as_number(name, v, int) for v in _as_list(name, value)]
    if base == "floats":
        return [_as_number(name, v, float) for v in _as_list(name, value)]
    raise AssertionError(f"unhandled kind {kind}")


# --------------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------------


# The ImageNet recipes were first named after the model size; those names still work, with a note.
DEPRECATED_RECIPE_NAMES = {
    "nano": "a2mamba_n-imagenet",
    "tiny": "a2mamba_t-imagenet",
    "small": "a2mamba_s-imagenet",
    "base": "a2mamba_b-imagenet",
    "large": "a2mamba_l-imagenet",
}


def recipe_names() -> list[str]:
    folder = resources.files("a2mamba_train") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def is_recipe_file(name_or_path: str) -> bool:
    return name_or_path.endswith(".toml") or Path(name_or_path).is_file()


def canonical_recipe_name(name_or_path: str) -> str:
    """A shipped recipe's current name (an old name is mapped, with a note on stderr); paths as given."""
    if is_recipe_file(name_or_path) or name_or_path not in DEPRECATED_RECIPE_NAMES:
        return name_or_path
    current = DEPRECATED_RECIPE_NAMES[name_or_path]
    print(f"note: recipe {name_or_path!r} is now called {current!r}; the old name will go away", file=sys.stderr)
    return current


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """Settings of a shipped recipe (by name) or of a TOML file (by path), checked and typed."""
    path = Path(name_or_path)
    if is_recipe_file(name_or_path):
        if not path.is_file():
            raise ConfigError(f"--recipe: no recipe file {name_or_path!r}")
        text = path.read_text()
        label = str(path)
    else:
        name_or_path = canonical_recipe_name(name_or_path)
        names = recipe_names()
        if name_or_path not in names:
            raise ConfigError(f"--recipe: unknown recipe {name_or_path!r}; available: {', '.join(names)}")
        text = (resources.files("a2mamba_train") / "recipes" / f"{name_or_path}.toml").read_text()
        label = name_or_path
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe {label}: not valid TOML: {err}") from None
    settings: dict[str, Any] = {}
    for key, value in _flatten(raw).items():
        if key in LAUNCH_ONLY or key not in FIELDS:
            raise ConfigError(f"recipe {label}: unknown setting {key!r}")
        try:
            settings[key] = coerce(key, value)
        except ConfigError as err:
            raise ConfigError(f"recipe {label}: {err}") from None
    return settings


def _flatten(table: dict[str, Any]) -> dict[str, Any]:
    """Recipe files group settings under [sections] for reading; the section names carry no meaning."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for inner_key, inner_value in _flatten(value).items():
                if inner_key in flat:
                    raise ConfigError(f"setting {inner_key!r} appears twice in the recipe")
                flat[inner_key] = inner_value
        else:
            if key in flat:
                raise ConfigError(f"setting {key!r} appears twice in the recipe")
            flat[key] = value
    return flat


# --------------------------------------------------------------------------------------------------
# building and resolving
# --------------------------------------------------------------------------------------------------


def build_config(
    overrides: dict[str, Any] | None = None,
    saved: dict[str, Any] | None = None,
) -> TrainConfig:
    """Layer defaults, the recipe named in ``overrides`` or ``saved``, ``saved`` and ``overrides``."""
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    recipe = overrides.get("recipe") or (saved or {}).get("recipe")
    if recipe:
        recipe = canonical_recipe_name(recipe)
        values.update(load_recipe(recipe))
    if saved:
        values.update({k: v for k, v in saved.items() if k in FIELDS})
    for key, value in overrides.items():
        values[key] = coerce(key, value)
    if recipe:
        values["recipe"] = recipe
    config = TrainConfig(**values)
    check_config(config)
    return config


def check_config(config: TrainConfig) -> None:
    """Refuse settings that cannot work together, naming the option to change."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(config.dataset in DATASETS, f"--dataset: expected one of {', '.join(DATASETS)}, got {config.dataset!r}")
    need(config.amp in AMP_MODES, f"--amp: expected one of {', '.join(AMP_MODES)}, got {config.amp!r}")
    need(config.device in DEVICES, f"--device: expected one of {', '.join(DEVICES)}, got {config.device!r}")
    need(
        config.verify_images in VERIFY_MODES,
        f"--verify-images: expected one of {', '.join(VERIFY_MODES)}, got {config.verify_images!r}",
    )
    need(config.batch_size >= 1, f"--batch-size: expected at least 1, got {config.batch_size}")
    need(config.epochs >= 1, f"--epochs: expected at least 1, got {config.epochs}")
    need(config.img_size >= 8, f"--img-size: expected at least 8, got {config.img_size}")
    need(config.cooldown_epochs >= 0 and config.warmup_epochs >= 0, "--cooldown-epochs/--warmup-epochs: expected >= 0")
    need(
        len(config.grad_checkpointing) == 4 and all(k >= 0 for k in config.grad_checkpointing),
        f"--grad-checkpointing: expected four counts >= 0, got {config.grad_checkpointing}",
    )
    need(len(config.scale) == 2 and len(config.ratio) == 2, "--scale/--ratio: expected two numbers each")
    need(config.opt_betas is None or len(config.opt_betas) == 2, "--opt-betas: expected two numbers")
    need(0.0 <= config.drop_path < 1.0, f"--drop-path: expected a rate in [0, 1), got {config.drop_path}")
    need(config.keep_best >= 0, "--keep-best: expected >= 0")
    need(config.nonfinite_patience >= 1, "--nonfinite-patience: expected at least 1")
    need(
        config.max_steps_per_epoch is None or config.max_steps_per_epoch >= 1,
        "--max-steps-per-epoch: expected at least 1",
    )
    need(config.distill_weight >= 0, "--distill-weight: expected >= 0")
    need(
        config.distill_weight == 0 or config.model_ema,
        "--distill-weight: self-distillation learns from the EMA model; also pass --model-ema",
    )
    need(config.num_classes is None or config.num_classes >= 1, "--num-classes: expected at least 1")
    need(config.workers is None or config.workers >= 0, "--workers: expected >= 0")
    need(config.threads is None or config.threads >= 1, "--threads: expected at least 1")


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size_from_env() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


@dataclass(frozen=True)
class ResolvedConfig(TrainConfig):
    """The settings of one launch: a TrainConfig with the values that depend on the launch filled in.

    This is what config.json holds and ``--print-config`` prints; everything after start-up reads
    these attributes (never the raw TrainConfig).
    """

    lr: float = 0.0  # after auto-lr scaling, or --lr as given
    workers: int = 0  # the default from the CPU count filled in
    world_size: int = 1
    global_batch_size: int = 0
    total_epochs: int = 0  # epochs + cooldown_epochs


def resolve(config: TrainConfig, world_size: int | None = None) -> ResolvedConfig:
    """The fully resolved settings of a run, as written to config.json and printed by --print-config."""
    world_size = world_size or world_size_from_env()
    global_batch = config.batch_size * world_size
    if config.lr is not None:
        lr = config.lr
    elif config.auto_lr:
        lr = config.base_lr * global_batch / config.auto_lr_batch
    else:
        lr = config.base_lr
    data_dir = config.data_dir
    if data_dir is None and config.dataset == "fashion-mnist":
        data_dir = os.environ.get("A2MAMBA_FASHION_MNIST_DIR", FASHION_MNIST_DEFAULT_DIR)
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    settings.update(
        lr=lr,
        data_dir=data_dir,
        workers=default_workers(config) if config.workers is None else config.workers,
    )
    return ResolvedConfig(
        **settings,
        world_size=world_size,
        global_batch_size=global_batch,
        total_epochs=config.epochs + config.cooldown_epochs,
    )


def default_workers(config: TrainConfig) -> int:
    """Loader processes per rank: none for in-memory data, else the cores left per rank (at most 8)."""
    if config.dataset == "fashion-mnist":
        return 0
    cores = os.cpu_count() or 1
    per_rank = cores // max(1, local_world_size_from_env())
    return max(1, min(8, per_rank - 1))


def to_json(resolved: ResolvedConfig) -> str:
    return json.dumps(dataclasses.asdict(resolved), indent=2, sort_keys=True)
