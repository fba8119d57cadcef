"""A2Mamba training: the published ImageNet recipes, a validation CLI, DDP and a Fashion-MNIST demo."""

from __future__ import annotations

from ._version import __version__
from .config import ConfigError, TrainConfig, build_config, load_recipe, recipe_names, resolve

__all__ = ["ConfigError", "TrainConfig", "__version__", "build_config", "load_recipe", "recipe_names", "resolve"]
