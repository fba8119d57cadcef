"""A2Mamba block and stage (docs/architecture.md §3 and §4)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from timm.layers import DropPath
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .layers import ChannelAffine, ConvFFN, LayerNorm2d, ResidualDepthwiseConv, RoPE2d
from .mass import MASS


class Block(nn.Module):
    """cpe -> token mixer -> cpe -> FFN, each with a residual; optional layer-scale or res-scale."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        window_dilation: int,
        mlp_ratio: float,
        drop_path: float,
        use_rpb: bool,
        global_mode: bool,
        image_size: tuple[int, int],
        layerscale: bool = False,
        resscale: bool = False,
        layer_init_value: float = 1.0,
    ):
        super().__init__()
        # Conditional position encodings, x + depthwise 3x3 (x), each one convolution.
        self.cpe1 = ResidualDepthwiseConv(dim, 3)
        self.norm1 = LayerNorm2d(dim)
        self.token_mixer = MASS(dim, num_heads, window_size, window_dilation, use_rpb, global_mode, image_size)
        self.cpe2 = ResidualDepthwiseConv(dim, 3)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = ConvFFN(dim, int(mlp_ratio * dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # When a stage asks for both, the reference uses the res-scale form.
        self.resscale = bool(resscale)
        if layerscale or resscale:
            self.layer_scale1 = ChannelAffine(dim, layer_init_value)
            self.layer_scale2 = ChannelAffine(dim, layer_init_value)
        else:
            self.layer_scale1 = nn.Identity()
            self.layer_scale2 = nn.Identity()

    def forward(self, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        x = self.cpe1(x)
        if self.resscale:
            x = self.layer_scale1(x) + self.drop_path(self.token_mixer(self.norm1(x), sin, cos))
            x = self.cpe2(x)
            x = self.layer_scale2(x) + self.drop_path(self.mlp(self.norm2(x)))
        else:
            x = x + self.drop_path(self.layer_scale1(self.token_mixer(self.norm1(x), sin, cos)))
            x = self.cpe2(x)
            x = x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))
        return x


@contextlib.contextmanager
def _frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Undo running-statistics updates made inside the block (used while checkpointing recomputes)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved, strict=True):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


class Stage(nn.Module):
    """`rope` + `blocks`; the first `use_checkpoint` blocks are recomputed in backward."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        window_dilation: int,
        mlp_ratio: float,
        drop_paths: Sequence[float],
        use_rpb: bool,
        global_mode: bool,
        image_size: tuple[int, int],
        layerscale: bool,
        resscale: bool,
        layer_init_value: float,
        use_checkpoint: int = 0,
    ):
        super().__init__()
        self.rope = RoPE2d(dim // num_heads)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                window_size,
                window_dilation,
                mlp_ratio,
                drop_paths[i],
                use_rpb,
                global_mode,
                image_size,
                layerscale,
                resscale,
                layer_init_value,
            )
            for i in range(depth)
        )
        self.use_checkpoint = int(use_checkpoint)

    def forward(self, x: Tensor) -> Tensor:
        sin, cos = self.rope.sin_cos(x.shape[2], x.shape[3])
        for i, block in enumerate(self.blocks):
            if i < self.use_checkpoint and x.requires_grad and torch.is_grad_enabled():
                # The recomputation must not count the batch twice in BatchNorm's running statistics.
                x = checkpoint(
                    block,
                    x,
                    sin,
                    cos,
                    use_reentrant=False,
                    context_fn=lambda b=block: (contextlib.nullcontext(), _frozen_batchnorm_statistics(b)),
                )
            else:
                x = block(x, sin, cos)
        return x
