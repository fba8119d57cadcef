"""The A2Mamba network (docs/architecture.md §2), with the timm model interface."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from timm.layers import SelectAdaptivePool2d, register_notrace_function, trunc_normal_
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from .block import Stage
from .layers import autocast_enabled

NUM_STAGES = 4
STRIDES = (4, 8, 16, 32)
# timm's global_pool values that keep the classifier's width (catavgmax would double it).
GLOBAL_POOLS = ("avg", "max", "avgmax", "")


def _per_stage(name: str, value, cast=None) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != NUM_STAGES:
        raise ValueError(f"{name} must have one entry per stage ({NUM_STAGES}), got {value!r}")
    return [cast(v) if cast else v for v in value]


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    if isinstance(image_size, Sequence) and len(image_size) == 2:
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be an int or an (H, W) pair, got {image_size!r}")


def _check_global_pool(global_pool) -> str:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be one of {GLOBAL_POOLS} ('' keeps the unpooled map), got {global_pool!r}")
    return global_pool


@register_notrace_function
def check_image(x: Tensor, in_chans: int, weight: Tensor) -> Tensor:
    """`x` unchanged if it is an image batch the model can run (a separate function so that FX leaves it opaque)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be a (batch, channels, height, width) tensor, got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"x has {x.shape[1]} channels but the model takes in_chans={in_chans} "
            f"(input shape {tuple(x.shape)}, expected (B, {in_chans}, H, W))"
        )
    if x.shape[2] < 32 or x.shape[3] < 32:
        raise ValueError(
            f"x must be at least 32x32 pixels so that the stride-32 stage keeps one pixel, "
            f"got {x.shape[2]}x{x.shape[3]}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (normalised image), got dtype {x.dtype}")
    if x.dtype != weight.dtype and not autocast_enabled(x.device.type):
        raise TypeError(
            f"x has dtype {x.dtype} but the model's weights are {weight.dtype}; convert one of them "
            f"(x.to({weight.dtype}) or model.to({x.dtype})) or run under torch.autocast"
        )
    return x


def _conv_bn(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch)]


class A2Mamba(nn.Module):
    """A2Mamba backbone + classifier; constructor arguments as in the reference implementation."""

    def __init__(
        self,
        image_size=224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (48, 96, 256, 448),
        depths: Sequence[int] = (2, 2, 10, 2),
        num_heads: Sequence[int] = (2, 4, 8, 16),
        window_size: Sequence[int] = (11, 9, 7, 7),
        window_dilation: Sequence[int] = (1, 1, 1, 1),
        use_rpb: bool = True,
        mlp_ratios: Sequence[float] = (4, 4, 3, 3),
        drop_path_rate: float = 0.0,
        projection: int = 1024,
        layerscales: Sequence[bool] = (False, False, False, False),
        resscales: Sequence[bool] = (False, False, False, False),
        layer_init_values: Sequence[float] = (1, 1, 1, 1),
        use_checkpoint: Sequence[int] = (0, 0, 0, 0),
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        device=None,
        dtype=None,
        **kwargs,
    ):
        super().__init__()
        # timm's generic img_size is the reference's image_size; anything else unknown is an error.
        img_size = kwargs.pop("img_size", None)
        if img_size is not None:
            image_size = img_size
        if kwargs:
            raise TypeError(f"A2Mamba got unexpected keyword arguments {sorted(kwargs)}")
        # Parameters are created directly on `device` (the meta device allocates nothing), then cast once.
        with torch.device(device) if device is not None else contextlib.nullcontext():
            self._build(
                image_size, in_chans, num_classes, embed_dims, depths, num_heads, window_size, window_dilation,
                use_rpb, mlp_ratios, drop_path_rate, projection, layerscales, resscales, layer_init_values,
                use_checkpoint, global_pool, drop_rate,
            )  # fmt: skip
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(
        self, image_size, in_chans, num_classes, embed_dims, depths, num_heads, window_size, window_dilation,
        use_rpb, mlp_ratios, drop_path_rate, projection, layerscales, resscales, layer_init_values,
        use_checkpoint, global_pool, drop_rate,
    ) -> None:  # fmt: skip
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        embed_dims = _per_stage("embed_dims", embed_dims, int)
        depths = _per_stage("depths", depths, int)
        num_heads = _per_stage("num_heads", num_heads, int)
        window_size = _per_stage("window_size", window_size, int)
        window_dilation = _per_stage("window_dilation", window_dilation, int)
        mlp_ratios = _per_stage("mlp_ratios", mlp_ratios, float)
        layerscales = _per_stage("layerscales", layerscales, bool)
        resscales = _per_stage("resscales", resscales, bool)
        layer_init_values = _per_stage("layer_init_values", layer_init_values, float)
        use_checkpoint = _per_stage("use_checkpoint", use_checkpoint, int)
        self.image_size = _image_size(image_size)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_features = embed_dims[-1]
        self.head_hidden_size = projection
        self.projection = projection
        self.drop_path_rate = drop_path_rate
        self.global_pool = _check_global_pool(global_pool)
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.drop_rate = float(drop_rate)

        c0 = embed_dims[0]
        self.patch_embed = nn.Sequential(
            *_conv_bn(in_chans, c0 // 2, 2),
            nn.GELU(),
            *_conv_bn(c0 // 2, c0 // 2, 1),
            nn.GELU(),
            *_conv_bn(c0 // 2, c0, 2),
            nn.GELU(),
            *_conv_bn(c0, c0, 1),
        )

        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        layers: list[nn.Module] = []
        self.feature_info = []
        for i in range(NUM_STAGES):
            first = sum(depths[:i])
            layers.append(
                Stage(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_size[i],
                    window_dilation[i],
                    mlp_ratios[i],
                    rates[first : first + depths[i]],
                    use_rpb,
                    global_mode=(i == NUM_STAGES - 1),
                    image_size=self.image_size,
                    layerscale=layerscales[i],
                    resscale=resscales[i],
                    layer_init_value=layer_init_values[i],
                    use_checkpoint=use_checkpoint[i],
                )
            )
            if i < NUM_STAGES - 1:
                layers.append(nn.Sequential(*_conv_bn(embed_dims[i], embed_dims[i + 1], 2)))
            else:
                layers.append(nn.Identity())
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=STRIDES[i], module=f"layers.{2 * i}"))
        self.layers = nn.ModuleList(layers)

        self.classifier = nn.Sequential(
            nn.Conv2d(embed_dims[-1], projection, 1),
            nn.BatchNorm2d(projection),
            nn.SiLU(),
            SelectAdaptivePool2d(pool_type=self.global_pool),
            nn.Conv2d(projection, num_classes, 1) if num_classes > 0 else nn.Identity(),
        )
        # Not inside `classifier`: the checkpoints address the last convolution as `classifier.4`.
        self.head_drop = nn.Dropout(self.drop_rate)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------- timm interface

    @property
    def stages(self) -> list[Stage]:
        return [self.layers[2 * i] for i in range(NUM_STAGES)]

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {name for name, _ in self.named_parameters() if name.endswith((".A_logs", ".Ds"))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^patch_embed",
            blocks=r"^layers\.(\d+)"
            if coarse
            else [(r"^layers\.(\d+)\.blocks\.(\d+)", None), (r"^layers\.(\d+)", (0,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.use_checkpoint = len(stage.blocks) if enable else 0

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier[4]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new last layer for `num_classes` (0: none); `global_pool` None keeps the current pooling."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if not isinstance(self.classifier, nn.Sequential):
            raise RuntimeError("the classifier was removed by prune_intermediate_layers(); there is no head to reset")
        if global_pool is not None:
            self.global_pool = _check_global_pool(global_pool)
            self.classifier[3] = SelectAdaptivePool2d(pool_type=self.global_pool)
        self.num_classes = num_classes
        if num_classes > 0:
            # Same device and dtype as the projection before it, and the model's train/eval mode.
            ref = self.classifier[0].weight
            head = nn.Conv2d(self.projection, num_classes, 1, device=ref.device, dtype=ref.dtype)
            self._init_weights(head)
        else:
            head = nn.Identity()
        self.classifier[4] = head.train(self.training)
        self.classifier[3].train(self.training)

    # ----------------------------------------------------------------- forward

    def _check_input(self, x: Tensor) -> Tensor:
        # The activations run channels-last: the per-pixel LayerNorms and the attention read each pixel's
        # channels contiguously, oneDNN's depthwise convolutions are faster so, and every convolution keeps
        # the layout it is given. Stage outputs are therefore channels-last strided (NCHW shapes as ever).
        return check_image(x, self.in_chans, self.patch_embed[0].weight).contiguous(memory_format=torch.channels_last)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(self._check_input(x))
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Projection, pooling and classifier; with `global_pool=''` the result keeps its (B, C, h, w) map."""
        proj, norm, act, pool = self.classifier[0], self.classifier[1], self.classifier[2], self.classifier[3]
        x = self.head_drop(pool(act(norm(proj(x)))))
        if not pre_logits:
            x = self.classifier[4](x)
        return x.flatten(1) if self.global_pool else x

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Stage outputs (strides 4, 8, 16, 32) selected by `indices`, and optionally the final features."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(NUM_STAGES, indices)
        x = self.patch_embed(self._check_input(x))
        last = max_index if (stop_early or intermediates_only) else NUM_STAGES - 1
        intermediates = []
        for i in range(last + 1):
            x = self.layers[2 * i](x)
            if i in take_indices:
                intermediates.append(x if output_fmt == "NCHW" else x.permute(0, 2, 3, 1))
            if i < last or not (stop_early or intermediates_only):
                x = self.layers[2 * i + 1](x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last index in `indices` (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(NUM_STAGES, indices)
        for j in range(2 * max_index + 1, len(self.layers)):
            self.layers[j] = nn.Identity()
        if prune_head:
            self.classifier = nn.Identity()
            self.num_classes = 0
        return take_indices
