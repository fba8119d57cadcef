"""Public entry point of the selective scan."""

from __future__ import annotations

from torch import Tensor

from . import _backends, _validate
from ._ops import selective_scan_state_op
from .reference import selective_scan_state_ref


def selective_scan_state(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
) -> Tensor:
    """All hidden states of the selective scan, `(batch, D, N, L)` in float32.

    `u`, `delta`: `(batch, D, L)`; `A`: `(D, N)`; `B`: `(batch, N, L)` or
    `(batch, G, N, L)` with `D % G == 0`; `delta_bias`: `(D,)`.

        delta_t = softplus(delta_t + delta_bias)   (when delta_softplus)
        h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   h_{-1} = 0

    Inputs may be float16, bfloat16, float32 or float64 (`u` and `delta` alike);
    the state is float32, or float64 for float64 inputs. Differentiable in `u`,
    `delta`, `A`, `B` and `delta_bias`.
    """
    _validate.check_scan(u, delta, A, B, delta_bias)
    backend = _backends.select(u.device, supported=("cuda", "cpu", "reference"))
    if backend == "reference":
        return selective_scan_state_ref(u, delta, A, B, delta_bias, delta_softplus)
    B4 = B.unsqueeze(1) if B.dim() == 3 else B
    return selective_scan_state_op(u, delta, A, B4, delta_bias, bool(delta_softplus))
