"""Small building blocks of A2Mamba: channel LayerNorm, per-channel affine, FFN, 2-D rotary code.

Module and parameter names follow the reference implementation, because the
published checkpoints address parameters by those names.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def island_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the "in float32" islands (docs/architecture.md §8): float32 for half types, else the dtype."""
    return torch.promote_types(dtype, torch.float32)


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for `device_type`; False for devices autocast does not know (meta)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled for `device_type` (a no-op on devices without autocast, such as meta)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of every pixel of an NCHW map (eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelAffine(nn.Module):
    """`y = weight * x + bias` per channel (the reference's layer-scale / res-scale).

    Stored like a depthwise 1x1 convolution (`weight` `(C, 1, 1, 1)`, `bias` `(C,)`)
    because that is how the checkpoints hold it, but it is not an `nn.Conv2d`, so
    weight initialisation leaves its init value alone.
    """

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim, 1, 1, 1), float(init_value)))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ResidualDepthwiseConv(nn.Conv2d):
    """`x + depthwise_conv(x)` (odd kernel, "same" padding) as one convolution.

    The identity is a 1 added to the centre tap of every filter, so the sum costs no pass of its own
    over the map. Parameters are those of the plain `nn.Conv2d` (`weight`, `bias`), as the checkpoints
    hold them; gradients are the same, since the added tap is a constant.
    """

    def __init__(self, channels: int, kernel_size: int):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the identity is the centre tap), got {kernel_size}")
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        r = self.kernel_size[0] // 2
        centre = F.pad(torch.ones_like(self.weight[:, :, :1, :1]), (r, r, r, r))
        return self._conv_forward(x, self.weight + centre, self.bias)


class ConvFFN(nn.Module):
    """fc1 (1x1) -> GELU -> x + depthwise 3x3 -> fc2 (1x1)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = ResidualDepthwiseConv(hidden, 3)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dwconv(self.act(self.fc1(x))))


def rope_angles(head_dim: int) -> Tensor:
    """The `angle` buffer: `10000 ** -linspace(0, 1, c/4)`, each value twice (float32)."""
    if head_dim % 4 or head_dim < 8:
        raise ValueError(
            f"head dim (channels / heads) must be a multiple of 4 and at least 8 for the 2-D RoPE, got {head_dim}"
        )
    # float32 whatever the default dtype: the published buffers were made so, and a float64 model
    # must use those same rounded angles (recomputing them exactly drifts by ~1e-9).
    angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4, dtype=torch.float32))
    return angle.repeat_interleave(2)


class RoPE2d(nn.Module):
    """2-D rotary position code: first half of a head's channels rotate with the row, second with the column."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("angle", rope_angles(head_dim))

    def _apply(self, fn, recurse=True):
        # model.half()/.bfloat16() would round the angles (and positions * angle) beyond use;
        # keep them at least float32 (docs/architecture.md §8.3). float64 models get float64.
        before = self.angle
        super()._apply(fn, recurse)
        if self.angle.dtype in (torch.float16, torch.bfloat16) and before.is_floating_point():
            self.angle = before.to(device=self.angle.device, dtype=island_dtype(before.dtype))
        return self

    def sin_cos(self, H: int, W: int) -> tuple[Tensor, Tensor]:
        """`(sin, cos)` for `apply_rope`, each `(H, W, c)`, from the stored (float32-rounded) angles, at least
        float32; `sin` carries the rotation's sign (negated on the first channel of every pair)."""
        angle = self.angle.to(island_dtype(self.angle.dtype))
        rows = torch.arange(H, device=angle.device, dtype=angle.dtype)[:, None] * angle
        cols = torch.arange(W, device=angle.device, dtype=angle.dtype)[:, None] * angle
        half = angle.shape[0]
        theta = torch.cat([rows[:, None, :].expand(H, W, half), cols[None, :, :].expand(H, W, half)], dim=-1)
        sign = torch.tensor([-1.0, 1.0], device=angle.device, dtype=angle.dtype).repeat(theta.shape[-1] // 2)
        return theta.sin() * sign, theta.cos()


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor, scale: float = 1.0) -> Tensor:
    """`(x * cos + rot(x) * sin) * scale`, `rot` mapping each pair `(a, b)` to `(-b, a)`; `x` is `(..., H, W, c)`
    and `sin`, `cos` come from `RoPE2d.sin_cos` (the sign of `rot` lives in `sin`).

    Computed in the dtype of `sin`/`cos` (at least float32) and returned contiguous in `x`'s dtype, so that
    half-precision activations do not round the rotation itself. Both angles of a pair are equal, so the
    rotation of pair `(a, b)` is the complex product `(a + ib) * (cos + i sin)`: one copy of `x` (which
    may be any strided view; the kernels that read the result want it contiguous anyway) and one complex
    multiply, faster than the same arithmetic on real pairs, whose swap is a `flip` of the last axis
    (a slow kernel for a pair axis of 2). Exported graphs (ONNX has no complex tensors) take the real form.
    """
    if scale != 1.0:
        sin, cos = sin * scale, cos * scale
    rotated = x.to(cos.dtype, memory_format=torch.contiguous_format, copy=True)
    if torch.compiler.is_exporting() or torch.jit.is_scripting() or torch.jit.is_tracing():
        swapped = rotated.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (b, a) for every pair (a, b)
        return rotated.mul_(cos).addcmul_(swapped, sin).to(x.dtype)
    rotation = torch.view_as_complex(torch.stack([cos[..., 0::2], sin[..., 1::2]], dim=-1))
    pairs = torch.view_as_complex(rotated.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
