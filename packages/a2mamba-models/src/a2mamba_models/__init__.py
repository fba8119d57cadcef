"""a2mamba-models: the A2Mamba vision backbones as timm models.

Importing this package registers `a2mamba_n`, `a2mamba_t`, `a2mamba_s`,
`a2mamba_b`, `a2mamba_l` (the published ImageNet-1k models) and `a2mamba_test`
(a tiny, test-only configuration without weights) with timm:

    import timm, a2mamba_models
    model = timm.create_model("a2mamba_t", pretrained=True)
"""

from __future__ import annotations

import a2mamba_ops

from . import detection, export, saving
from ._version import __version__
from .a2mamba import A2Mamba
from .flops import count_flops, count_params
from .geometry import branch_windows
from .pretrained import (
    CheckpointMismatch,
    PretrainedWeightsUnavailable,
    checkpoint_filter_fn,
    load_checkpoint,
    read_checkpoint,
)
from .variants import PUBLISHED, VARIANT_ARGS, a2mamba_b, a2mamba_l, a2mamba_n, a2mamba_s, a2mamba_t, a2mamba_test

# Probe the ops backends now, eagerly: if the first probe happened inside torch.compile, dynamo
# would have to trace its optional imports.
a2mamba_ops.available_backends()

__all__ = [
    "PUBLISHED",
    "VARIANT_ARGS",
    "A2Mamba",
    "CheckpointMismatch",
    "PretrainedWeightsUnavailable",
    "__version__",
    "a2mamba_b",
    "a2mamba_l",
    "a2mamba_n",
    "a2mamba_s",
    "a2mamba_t",
    "a2mamba_test",
    "branch_windows",
    "checkpoint_filter_fn",
    "count_flops",
    "count_params",
    "detection",
    "export",
    "load_checkpoint",
    "read_checkpoint",
    "saving",
]
