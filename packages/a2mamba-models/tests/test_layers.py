"""Building blocks whose exact values the published checkpoints depend on."""

from __future__ import annotations

import pytest
import timm
import torch

from a2mamba_models.layers import ResidualDepthwiseConv, RoPE2d, apply_rope, rope_angles


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


def _rotate_pairs(x):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([-b, a], dim=-1).flatten(-2)


@pytest.fixture(params=["complex", "real"])
def rope_form(request, monkeypatch):
    """Eager RoPE is a complex product; exported graphs (no complex tensors in ONNX) use real pairs."""
    if request.param == "real":
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    return request.param


def test_rope_is_the_rotation_of_every_pair_with_the_scale(rope_form):
    torch.manual_seed(0)
    H, W, c = 5, 7, 8
    sin, cos = RoPE2d(c).double().sin_cos(H, W)
    # A strided view of a larger map, as the token mixer hands q and k over.
    base = torch.randn(2, 3 * c, H, W, dtype=torch.float64)
    x = base.permute(0, 2, 3, 1)[..., c : 2 * c].unflatten(-1, (1, c)).permute(0, 3, 1, 2, 4)
    before = base.clone()
    angle = RoPE2d(c).double().angle
    rows = torch.arange(H, dtype=torch.float64)[:, None, None] * angle  # first half of the channels: the row
    cols = torch.arange(W, dtype=torch.float64)[None, :, None] * angle  # second half: the column
    theta = torch.cat([rows.expand(H, W, c // 2), cols.expand(H, W, c // 2)], dim=-1)
    expected = (x * theta.cos() + _rotate_pairs(x) * theta.sin()) * 0.25
    out = apply_rope(x, sin, cos, scale=0.25)
    assert out.is_contiguous() and out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    assert torch.equal(base, before), "the rotation must not write into the map it reads"


def test_rope_gradient(rope_form):
    sin, cos = RoPE2d(8).double().sin_cos(3, 4)
    x = torch.randn(1, 2, 3, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_rope(t, sin, cos, scale=0.5), (x,))


def test_rope_of_half_precision_maps_rotates_in_float32(rope_form):
    sin, cos = RoPE2d(8).sin_cos(3, 4)
    x = torch.randn(2, 1, 3, 4, 8).to(torch.bfloat16)
    out = apply_rope(x, sin, cos, scale=0.5)
    assert out.dtype == torch.bfloat16 and out.is_contiguous()
    torch.testing.assert_close(out, apply_rope(x.float(), sin, cos, scale=0.5).to(torch.bfloat16), rtol=0, atol=0)


@pytest.mark.parametrize("kernel", [3, 5])
def test_residual_depthwise_conv_is_x_plus_the_convolution(kernel):
    torch.manual_seed(0)
    conv = ResidualDepthwiseConv(6, kernel).double()
    plain = torch.nn.Conv2d(6, 6, kernel, padding=kernel // 2, groups=6).double()
    plain.load_state_dict(conv.state_dict(), strict=True)  # the checkpoints' keys and shapes
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv(x), x + plain(x), rtol=1e-14, atol=1e-14)
    grads = torch.autograd.grad(conv(x).square().sum(), (x, conv.weight, conv.bias))
    expected = torch.autograd.grad((x + plain(x)).square().sum(), (x, plain.weight, plain.bias))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ResidualDepthwiseConv(6, 4)
