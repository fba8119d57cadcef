"""Exporting a model to ONNX or to a `torch.export` program (`.pt2`), with a dynamic batch dimension.

The native ops export as they are in a `.pt2` program (load it after `import a2mamba_ops`); for ONNX
they are decomposed into standard operators at export time (see `a2mamba_ops._export`), so the file
runs in onnxruntime or any other ONNX runtime with nothing of this project installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

FORMATS = ("onnx", "pt2")
# Example batch for tracing: 2, not 1, because torch.export specialises a dimension of size 1.
_EXAMPLE_BATCH = 2


def example_input(model: nn.Module, img_size: tuple[int, int], batch: int = _EXAMPLE_BATCH) -> torch.Tensor:
    """A random image batch of the model's channels, dtype and device."""
    weight = next(model.parameters())
    return torch.randn(batch, model.in_chans, *img_size, dtype=weight.dtype, device=weight.device)


def _dynamic_batch():
    return ({0: torch.export.Dim("batch", min=1)},)


def export_program(model: nn.Module, img_size: tuple[int, int]) -> torch.export.ExportedProgram:
    """`torch.export` of the model in eval mode at `img_size`, batch dimension dynamic."""
    model.eval()
    return torch.export.export(model, (example_input(model, img_size),), dynamic_shapes=_dynamic_batch())


def export_onnx(model: nn.Module, path: str | os.PathLike, img_size: tuple[int, int]) -> Path:
    """Write the model to an ONNX file (input `image` `(batch, C, H, W)`, output `logits`); returns the path."""
    model.eval()
    program = torch.onnx.export(
        model,
        (example_input(model, img_size),),
        dynamo=True,
        dynamic_shapes=_dynamic_batch(),
        input_names=["image"],
        output_names=["logits"],
        verbose=False,
    )
    path = Path(path)
    program.save(str(path))
    return path


def export_pt2(model: nn.Module, path: str | os.PathLike, img_size: tuple[int, int]) -> Path:
    """Write the model's `torch.export` program to `path` (`torch.export.load` after `import a2mamba_ops`)."""
    path = Path(path)
    torch.export.save(export_program(model, img_size), str(path))
    return path


def onnxruntime_difference(model: nn.Module, path: str | os.PathLike, img_size: tuple[int, int], batch: int = 3):
    """Max |onnxruntime - PyTorch| over max |PyTorch| on a random batch; None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example_input(model, img_size, batch)
    with torch.no_grad():
        expected = model.eval()(x).double().cpu()
    (got,) = session.run(None, {session.get_inputs()[0].name: x.cpu().numpy()})
    scale = expected.abs().max().clamp_min(1e-12)
    return float((torch.from_numpy(got).double() - expected).abs().max() / scale)
