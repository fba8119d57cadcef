"""A2SSM: a selective scan whose hidden states are re-aggregated by the attention maps (docs/architecture.md §7)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from a2mamba_ops import na2d_av, selective_scan_state

from .geometry import BranchWindows
from .layers import autocast_off, island_dtype


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class A2SSM(nn.Module):
    """Attention-augmented SSM with state size 1 over a `(B, C, H, W)` map split into `num_heads` heads."""

    def __init__(self, d_model: int, num_heads: int, d_state: int = 1):
        super().__init__()
        if d_state != 1:
            raise ValueError(f"d_state must be 1 (the released A2SSM), got {d_state}")
        self.d_model = d_model
        self.d_state = d_state
        self.num_heads = num_heads
        self.dt_rank = math.ceil(d_model / 16)
        R, N = self.dt_rank, d_state

        # Own initialisation (docs/architecture.md §9); the model-wide init skips these plain parameters.
        x_proj = nn.Linear(d_model, R + 2 * N, bias=False)
        self.x_proj_weight = nn.Parameter(x_proj.weight.detach().clone())
        self.dt_projs_weight = nn.Parameter(torch.empty(d_model, R).uniform_(-(R**-0.5), R**-0.5))
        dt = torch.exp(torch.rand(d_model) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_projs_bias = nn.Parameter(_inverse_softplus(dt))
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(d_model, 1))
        self.Ds = nn.Parameter(torch.ones(d_model))
        self.conv2d = nn.Conv2d(d_model, d_model, 5, padding=2, groups=d_model)
        self.state_fusion = nn.Conv2d(num_heads, num_heads, 1)

    def forward(self, x: Tensor, attn1: Tensor, attn2: Tensor, windows: BranchWindows) -> Tensor:
        """`x`: `(B, C, H, W)`; `attn1`/`attn2`: the branches' softmaxed attention `(B, n/2, H, W, kh*kw)`.

        Returns `(B, C, H, W)`, computed in at least float32.
        """
        B, C, H, W = x.shape
        L = H * W
        n = self.num_heads
        u = F.silu(self.conv2d(x)).reshape(B, C, L)
        # In the model u is channels-last, (B, C, L) with unit channel stride: matmul takes x_proj as one
        # product over all pixels, (B*L, C) @ (C, R + 2N), reading u as it lies.
        dbc = torch.matmul(self.x_proj_weight.to(u.dtype), u)
        dt, Bm, Cm = torch.split(dbc, [self.dt_rank, self.d_state, self.d_state], dim=1)
        # bmm writes delta as (B, C, L), the layout the scan reads, from the strided dt; torch.matmul
        # (folding the batch into one product) made a (B, C, L) copy on the way.
        delta = torch.bmm(self.dt_projs_weight.to(u.dtype).expand(B, -1, -1), dt)
        A = -torch.exp(self.A_logs.to(island_dtype(self.A_logs.dtype)))
        # Contiguous inputs (the kernels copy to contiguous anyway): under torch.compile the gradients
        # the scan returns then have the layout its fake kernel promises.
        h = selective_scan_state(
            u.contiguous(), delta.contiguous(), A, Bm.contiguous(), delta_bias=self.dt_projs_bias, delta_softplus=True
        )  # (B, C, 1, L)

        dtype = h.dtype
        with autocast_off(x.device.type):
            # Heads of width c = C/n in (B, heads, H, W, c) layout, channel i*c + j.
            heads = h.reshape(B, n, C // n, H, W).permute(0, 1, 3, 4, 2)
            half = n // 2
            agg1 = na2d_av(attn1.to(dtype), heads[:, :half], windows.kernel, 1)
            agg2 = na2d_av(attn2.to(dtype), heads[:, half:], windows.kernel, windows.dilation2)
            # state_fusion is a 1x1 convolution over the heads, i.e. an (n, n) mix of the n head maps: one
            # batched product over the maps as the aggregation leaves them, (B, n, H*W*c). mkldnn ran the
            # convolution (n channels over a (c, L) "image") many times slower at A2Mamba-N's local stages;
            # torch.matmul with a 2-D left operand folds the batch into a (B*H*W*c, n) product, with a
            # transposing copy on each side. bmm reads and writes the maps as they lie.
            agg = torch.cat([agg1, agg2], dim=1).reshape(B, n, L * (C // n))
            mix = self.state_fusion.weight.to(dtype).reshape(1, n, n).expand(B, n, n)
            bias = self.state_fusion.bias.to(dtype).reshape(1, n, 1).expand(B, n, agg.shape[-1])
            fused = torch.baddbmm(bias, mix, agg)
            # Back to channel i*c + j of (B, C, L) inside the elementwise pass, not by a copy of its own.
            fused = fused.reshape(B, n, L, C // n).transpose(-1, -2)
            y = torch.addcmul(
                (u.to(dtype) * self.Ds.to(dtype)[:, None]).reshape(B, n, C // n, L), fused, Cm.to(dtype)[:, None]
            )
        # Hand back in the parameters' precision: float32 under autocast, bfloat16 in a pure bfloat16 model.
        return y.reshape(B, C, H, W).to(torch.promote_types(x.dtype, self.Ds.dtype))
