"""a2mamba-ops: the two ops of the A2Mamba backbone.

- `selective_scan_state`: the selective scan, returning every hidden state.
- `na2d_qk` / `na2d_av`: 2-D neighbourhood attention with relative position
  bias and dilation, NATTEN 0.17 semantics (a drop-in for its functional API);
  `na2d_qk_softmax`: the attention weights (`na2d_qk` + softmax) in one call.

Each op has a plain-PyTorch reference (`a2mamba_ops.reference`) and native
backends; the fastest one for the tensors' device runs unless `use_backend`
forces another.
"""

from . import _export  # noqa: F401  (lets torch.onnx.export decompose the native ops)
from ._backends import available_backends, use_backend
from ._native import cpu_capability
from ._version import __version__
from .na2d import na2d_av, na2d_qk, na2d_qk_softmax
from .scan import selective_scan_state

__all__ = [
    "__version__",
    "available_backends",
    "cpu_capability",
    "na2d_av",
    "na2d_qk",
    "na2d_qk_softmax",
    "selective_scan_state",
    "use_backend",
]
