"""The five published A2Mamba variants (+ a tiny test-only one), registered with timm."""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .a2mamba import A2Mamba
from .pretrained import checkpoint_filter_fn, resolve_pretrained_state_dict

HUB_ID = "LMMM2025/A2Mamba"
HUB_FOLDER = "a2mamba_pretrained_weights"

_COMMON = dict(window_size=[11, 9, 7, 7], use_rpb=True, projection=1024)

# Constructor arguments of each released configuration (docs/architecture.md §1.1 and §1.3).
VARIANT_ARGS: dict[str, dict[str, Any]] = {
    "a2mamba_n": dict(
        embed_dims=[32, 64, 128, 192], depths=[2, 2, 8, 2], num_heads=[2, 2, 4, 8], mlp_ratios=[4, 4, 3, 3], **_COMMON
    ),
    "a2mamba_t": dict(
        embed_dims=[48, 96, 256, 448], depths=[2, 2, 10, 2], num_heads=[2, 4, 8, 16], mlp_ratios=[4, 4, 3, 3], **_COMMON
    ),
    "a2mamba_s": dict(
        embed_dims=[64, 128, 320, 512],
        depths=[2, 4, 12, 4],
        num_heads=[2, 4, 10, 16],
        mlp_ratios=[4, 4, 3, 3],
        resscales=[False, False, True, True],
        **_COMMON,
    ),
    "a2mamba_b": dict(
        embed_dims=[96, 192, 384, 512],
        depths=[4, 6, 12, 6],
        num_heads=[4, 8, 12, 16],
        mlp_ratios=[4, 4, 3.75, 3.75],
        layerscales=[True, True, True, True],
        layer_init_values=[1, 1, 1e-6, 1e-6],
        **_COMMON,
    ),
    "a2mamba_l": dict(
        embed_dims=[96, 192, 448, 672],
        depths=[4, 6, 18, 6],
        num_heads=[4, 8, 16, 24],
        mlp_ratios=[4, 4, 4, 4],
        layerscales=[True, True, True, True],
        layer_init_values=[1, 1, 1e-6, 1e-6],
        **_COMMON,
    ),
    # NOT a published model and has no weights: a tiny configuration for tests and CPU smoke
    # training (e.g. Fashion-MNIST resized to 32x32 or 64x64). Its windows shrink on small maps.
    "a2mamba_test": dict(
        embed_dims=[16, 32, 64, 96],
        depths=[1, 1, 2, 1],
        num_heads=[2, 2, 2, 4],
        window_size=[3, 3, 3, 3],
        mlp_ratios=[2, 2, 2, 2],
        use_rpb=True,
        projection=128,
    ),
}

PUBLISHED = ("a2mamba_n", "a2mamba_t", "a2mamba_s", "a2mamba_b", "a2mamba_l")
CROP_PCT = {"a2mamba_n": 0.9, "a2mamba_t": 0.9, "a2mamba_s": 0.9, "a2mamba_b": 0.95, "a2mamba_l": 0.975}
SIZE_NAMES = {"a2mamba_n": "nano", "a2mamba_t": "tiny", "a2mamba_s": "small", "a2mamba_b": "base", "a2mamba_l": "large"}


def hub_filename(variant: str) -> str:
    """Path of a variant's weights inside the hub repository."""
    return f"{HUB_FOLDER}/a2mamba_{SIZE_NAMES[variant]}.pth"


def _cfg(**kwargs) -> dict[str, Any]:
    cfg = dict(
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(7, 7),
        interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.0",
        classifier="classifier.4",
        license="apache-2.0",
        paper_ids="arXiv:2507.16624",
        paper_name="A2Mamba: Attention-augmented State Space Models for Visual Recognition",
        origin_url="https://github.com/LMMMEng/A2Mamba",
    )
    cfg.update(kwargs)
    return cfg


default_cfgs = generate_default_cfgs(
    {
        **{
            f"{name}.in1k": _cfg(hf_hub_id=HUB_ID, hf_hub_filename=hub_filename(name), crop_pct=CROP_PCT[name])
            for name in PUBLISHED
        },
        "a2mamba_test": _cfg(crop_pct=1.0, input_size=(3, 64, 64), pool_size=(2, 2), num_classes=10, license=None),
    }
)


def _create(variant: str, pretrained: bool = False, **kwargs) -> A2Mamba:
    sha256 = kwargs.pop("pretrained_sha256", None)
    given_cfg = kwargs.get("pretrained_cfg")
    source = given_cfg.get("source") if isinstance(given_cfg, dict) else None
    if pretrained:
        # Fetch and validate the weights here (fast, clear errors), then hand them to timm as a state dict.
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        overlay["state_dict"] = resolve_pretrained_state_dict(
            variant, kwargs.get("pretrained_cfg"), overlay, sha256=sha256, cache_dir=kwargs.get("cache_dir")
        )
        # timm reads `local-dir:` / `hf-hub:` sources itself, ignoring a given state dict; it is read already.
        overlay["source"] = ""
        kwargs["pretrained_cfg_overlay"] = overlay
    model = build_model_with_cfg(
        A2Mamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **kwargs,
    )
    _tidy_pretrained_cfg(model, source)
    return model


def _tidy_pretrained_cfg(model, source: str | None) -> None:
    """Drop the weights passed through pretrained_cfg (no second copy kept alive); restore the source it named."""
    for m in (model, getattr(model, "model", None)):
        cfg = getattr(m, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            if cfg.get("state_dict") is not None:
                cfg["state_dict"] = None
            if source:
                cfg["source"] = source


def _variant(name: str, pretrained: bool, kwargs: dict[str, Any]) -> A2Mamba:
    """A registered variant: its released configuration, overridden by the caller's keyword arguments."""
    return _create(name, pretrained, **dict(VARIANT_ARGS[name], **kwargs))


@register_model
def a2mamba_n(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-Nano, 4.2 M parameters (ImageNet-1k weights: LMMM2025/A2Mamba, a2mamba_nano.pth)."""
    return _variant("a2mamba_n", pretrained, kwargs)


@register_model
def a2mamba_t(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-Tiny, 15.4 M parameters (ImageNet-1k weights: LMMM2025/A2Mamba, a2mamba_tiny.pth)."""
    return _variant("a2mamba_t", pretrained, kwargs)


@register_model
def a2mamba_s(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-Small, 30.7 M parameters (ImageNet-1k weights: LMMM2025/A2Mamba, a2mamba_small.pth)."""
    return _variant("a2mamba_s", pretrained, kwargs)


@register_model
def a2mamba_b(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-Base, 51.1 M parameters (ImageNet-1k weights: LMMM2025/A2Mamba, a2mamba_base.pth)."""
    return _variant("a2mamba_b", pretrained, kwargs)


@register_model
def a2mamba_l(pretrained: bool = False, **kwargs) -> A2Mamba:
    """A2Mamba-Large, 93.7 M parameters (ImageNet-1k weights: LMMM2025/A2Mamba, a2mamba_large.pth)."""
    return _variant("a2mamba_l", pretrained, kwargs)


@register_model
def a2mamba_test(pretrained: bool = False, **kwargs) -> A2Mamba:
    """Tiny test-only A2Mamba (NOT a published model, no pretrained weights)."""
    return _variant("a2mamba_test", pretrained, kwargs)
