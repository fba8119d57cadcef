"""A2Mamba training: the published ImageNet recipes, a validation CLI, DDP and a Fashion-MNIST demo."""

from __future__ import annotations

from ._version import __version__
from .config import (
    ConfigError,
    ResolvedConfig,
    TrainConfig,
    build_config,
    check_config,
    load_recipe,
    recipe_names,
    resolve,
)

__all__ = [
    "ConfigError",
    "ResolvedConfig",
    "TrainConfig",
    "__version__",
    "build_config",
    "check_config",
    "load_recipe",
    "recipe_names",
    "resolve",
]
