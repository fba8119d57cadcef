"""An A2Mamba feature-pyramid backbone for torchvision's detection models (Faster/Mask R-CNN, RetinaNet, ...).

torchvision's `BackboneWithFPN` expects a ResNet-like module it can take layers from, which a timm
feature model is not; `A2MambaFPN` plays the same role: it returns an ordered dict of 256-channel
maps named `"0"`, `"1"`, ... (+ `"pool"`), and has the `out_channels` attribute the heads read.
Needs torchvision (`pip install torchvision`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import timm
from torch import Tensor, nn


class A2MambaFPN(nn.Module):
    """A2Mamba stages -> torchvision `FeaturePyramidNetwork` (+ a max-pooled extra level)."""

    def __init__(
        self,
        model_name: str = "a2mamba_t",
        pretrained: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_channels: int = 256,
        extra_pool: bool = True,
        freeze_batch_norm: bool = False,
        **model_kwargs,
    ):
        super().__init__()
        from timm.layers import freeze_batch_norm_2d
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        body = timm.create_model(
            model_name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices), **model_kwargs
        )
        # Small detection batches make BatchNorm statistics noisy; frozen BN uses the pretrained ones.
        self.body = freeze_batch_norm_2d(body) if freeze_batch_norm else body
        self.fpn = FeaturePyramidNetwork(
            body.feature_info.channels(), out_channels, extra_blocks=LastLevelMaxPool() if extra_pool else None
        )
        self.out_channels = out_channels
        self.strides = body.feature_info.reduction()

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))


def a2mamba_fpn_backbone(model_name: str = "a2mamba_t", pretrained: bool = False, **kwargs) -> A2MambaFPN:
    """`A2MambaFPN(model_name, pretrained, **kwargs)`: pass it as `backbone=` to torchvision's detectors."""
    return A2MambaFPN(model_name, pretrained=pretrained, **kwargs)
