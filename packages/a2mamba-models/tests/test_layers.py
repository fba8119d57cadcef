"""Building blocks whose exact values the published checkpoints depend on."""

from __future__ import annotations

import timm
import torch

from a2mamba_models.layers import rope_angles


def test_rope_angles_are_float32_whatever_the_default_dtype():
    expected = rope_angles(16)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        angles = rope_angles(16)
        model = timm.create_model("a2mamba_test")
    finally:
        torch.set_default_dtype(previous)
    assert angles.dtype == torch.float32 and torch.equal(angles, expected)
    buffers = [b for name, b in model.named_buffers() if name.endswith("rope.angle")]
    assert buffers and all(b.dtype == torch.float32 for b in buffers)
