"""The selective scan that returns every hidden state, in plain PyTorch.

Definition (per batch b, channel d, state s, step t; h_{-1} = 0):

    delta_t = softplus(delta_t + bias)            (if delta_softplus)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t

Stepping through t in Python would be one tiny kernel launch per pixel. Instead
the sequence is cut into chunks of `chunk` steps: inside a chunk the recurrence
is the closed form h_t = sum_{s<=t} exp(A*(S_t - S_s)) x_s + exp(A*S_t) h_in
(S the running sum of delta), a masked (chunk x chunk) matrix product whose
exponents are never positive, so it cannot overflow; only the chunk-to-chunk
carry is a Python loop, L/chunk iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_state_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = True,
    chunk: int = 64,
) -> Tensor:
    """Every hidden state `(batch, D, N, L)`, float32 (float64 for float64 inputs).

    `B` is `(batch, N, L)` or grouped `(batch, G, N, L)`; channel `d` reads group
    `d // (D // G)`.
    """
    compute = torch.float64 if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype) else torch.float32
    batch, D, L = u.shape
    N = A.shape[1]
    if B.dim() == 3:
        B = B.unsqueeze(1)
    B = B.to(compute).repeat_interleave(D // B.shape[1], dim=1)  # (batch, D, N, L)

    dt = delta.to(compute)
    if delta_bias is not None:
        dt = dt + delta_bias.to(compute)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    log_decay = dt[:, :, None, :] * A.to(compute)[None, :, :, None]  # (batch, D, N, L), <= 0
    x = (dt * u.to(compute))[:, :, None, :] * B

    pad = (-L) % chunk
    if pad:  # zero decay and zero input past the end leave the real states untouched
        log_decay = F.pad(log_decay, (0, pad))
        x = F.pad(x, (0, pad))
    n_chunks = (L + pad) // chunk
    log_decay = log_decay.reshape(batch, D, N, n_chunks, chunk)
    x = x.reshape(batch, D, N, n_chunks, chunk)

    S = log_decay.cumsum(-1)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=u.device).tril()
    seg = torch.where(causal, S[..., :, None] - S[..., None, :], float("-inf"))
    h_local = torch.einsum("...ts,...s->...t", seg.exp(), x)

    # Carry the state from chunk to chunk: h_t += exp(S_t) * h_end(previous chunk).
    carry_decay = S.exp()
    states = []
    h_end = torch.zeros_like(h_local[..., 0, 0])
    for c in range(n_chunks):
        h_c = h_local[..., c, :] + carry_decay[..., c, :] * h_end[..., None]
        states.append(h_c)
        h_end = h_c[..., -1]
    h = torch.stack(states, dim=-2).reshape(batch, D, N, n_chunks * chunk)
    return h[..., :L]
