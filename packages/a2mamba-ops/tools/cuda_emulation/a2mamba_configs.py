"""The kernel configurations the five published A2Mamba variants run at 224 and 384 pixels.

Read from the sources of packages/a2mamba-models (the monorepo sibling), without importing
the package (it needs timm): `VARIANT_ARGS` is evaluated from variants.py's syntax tree and
the window rule is geometry.py's own `branch_windows`, loaded by file path (it needs torch
only). So a change of a variant's widths, heads or windows reaches the CUDA report and the
emulation without anyone editing a table here.

Per stage s (map side `resolution / 2**(s+2)`): both attention branches run na2d_qk and
na2d_av with `heads / 2` heads of width `embed / heads`, branch 1 at dilation 1 (the
variants' default `window_dilation`), branch 2 at the dilation `branch_windows` derives; the
A2SSM of the first three stages scans `L = H * W` steps over `embed` channels with state
size 1 and one B group, then runs na2d_av on the hidden states with the same windows.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODELS_SRC = Path(__file__).resolve().parents[3] / "a2mamba-models" / "src" / "a2mamba_models"
PUBLISHED = ("a2mamba_n", "a2mamba_t", "a2mamba_s", "a2mamba_b", "a2mamba_l")
RESOLUTIONS = (224, 384)
STAGE_STRIDES = (4, 8, 16, 32)
SCAN_STAGES = 3  # the last stage runs global attention instead of the A2SSM


@dataclass(frozen=True, order=True)
class NaConfig:
    """One neighbourhood-attention call: kernel, dilation, head dim and map (rows, cols)."""

    kernel: tuple[int, int]
    dilation: tuple[int, int]
    head_dim: int
    size: tuple[int, int]

    @property
    def label(self) -> str:
        (kh, kw), (dh, dw), (h, w) = self.kernel, self.dilation, self.size
        return f"K{kh}x{kw} d{dh}x{dw} C{self.head_dim} {h}x{w}"


@dataclass(frozen=True, order=True)
class ScanConfig:
    """One selective scan: channels D, state size N, length L (one B group)."""

    D: int
    L: int
    N: int = 1


@dataclass(frozen=True)
class Use:
    variant: str
    resolution: int
    stage: int


@cache
def variant_args() -> dict[str, dict]:
    tree = ast.parse((MODELS_SRC / "variants.py").read_text())
    namespace: dict = {}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id in ("_COMMON", "VARIANT_ARGS") for t in targets):
            if isinstance(node, ast.AnnAssign):
                node = ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)
            code = compile(ast.Module(body=[node], type_ignores=[]), "variants.py", "exec")
            exec(code, {"dict": dict, "__builtins__": {}}, namespace)  # literals and dict() only
    return {name: namespace["VARIANT_ARGS"][name] for name in PUBLISHED}


@cache
def _branch_windows():
    spec = importlib.util.spec_from_file_location("a2mamba_geometry", MODELS_SRC / "geometry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module.branch_windows


def na_uses() -> dict[NaConfig, list[Use]]:
    """Every distinct na2d configuration, with where it runs."""
    uses: dict[NaConfig, list[Use]] = {}
    for variant, args in variant_args().items():
        for resolution in RESOLUTIONS:
            for stage, stride in enumerate(STAGE_STRIDES):
                side = resolution // stride
                head_dim = args["embed_dims"][stage] // args["num_heads"][stage]
                windows = _branch_windows()(side, side, args["window_size"][stage], 1)
                for dilation in (windows.dilation1, windows.dilation2):
                    config = NaConfig(windows.kernel, dilation, head_dim, (side, side))
                    uses.setdefault(config, []).append(Use(variant, resolution, stage))
    return dict(sorted(uses.items()))


def scan_uses() -> dict[ScanConfig, list[Use]]:
    uses: dict[ScanConfig, list[Use]] = {}
    for variant, args in variant_args().items():
        for resolution in RESOLUTIONS:
            for stage in range(SCAN_STAGES):
                side = resolution // STAGE_STRIDES[stage]
                config = ScanConfig(args["embed_dims"][stage], side * side)
                uses.setdefault(config, []).append(Use(variant, resolution, stage))
    return dict(sorted(uses.items()))


def kernel_dilation_pairs() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    return sorted({(c.kernel, c.dilation) for c in na_uses()})


if __name__ == "__main__":
    for config, where in na_uses().items():
        print(config.label, len(where))
    for config in scan_uses():
        print(config)
