"""A2SSM against a line-by-line transcription of its definition (docs/architecture.md §6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from a2mamba_models.a2ssm import A2SSM
from a2mamba_models.geometry import branch_windows
from a2mamba_ops import na2d_av, selective_scan_state, use_backend


def a2ssm_ref(m: A2SSM, o, attn1, attn2, windows):
    """The definition as written: the state fusion is the 1x1 convolution over `(B, n, c, L)`."""
    B, C, H, W = o.shape
    L, n = H * W, m.num_heads
    u = F.silu(m.conv2d(o)).reshape(B, C, L)
    dt, Bm, Cm = torch.split(m.x_proj_weight @ u, [m.dt_rank, 1, 1], dim=1)
    h = selective_scan_state(u, m.dt_projs_weight @ dt, -torch.exp(m.A_logs), Bm, m.dt_projs_bias, True)
    heads = h.reshape(B, n, C // n, H, W).permute(0, 1, 3, 4, 2)
    agg1 = na2d_av(attn1, heads[:, : n // 2], windows.kernel, 1)
    agg2 = na2d_av(attn2, heads[:, n // 2 :], windows.kernel, windows.dilation2)
    agg = torch.cat([agg1, agg2], dim=1).permute(0, 1, 4, 2, 3).reshape(B, n, C // n, L)
    fused = m.state_fusion(agg).reshape(B, C, L)
    return (fused * Cm + u * m.Ds[:, None]).reshape(B, C, H, W)


@pytest.mark.parametrize(("heads", "size", "kernel"), [(2, (7, 9), 3), (4, (10, 6), 3), (4, (13, 11), 5)])
def test_a2ssm_is_its_definition_with_gradients(heads, size, kernel):
    torch.manual_seed(heads * 100 + size[0])
    C, (H, W) = 8 * heads, size
    m = A2SSM(C, heads).double()
    with torch.no_grad():  # a state fusion far from the identity, so a mixed-up head order shows
        m.state_fusion.weight.normal_()
        m.state_fusion.bias.normal_()
    windows = branch_windows(H, W, kernel)
    K = windows.kernel[0] * windows.kernel[1]
    o = torch.randn(2, C, H, W, dtype=torch.float64, requires_grad=True)
    attn1 = torch.randn(2, heads // 2, H, W, K, dtype=torch.float64).softmax(-1).requires_grad_()
    attn2 = torch.randn(2, heads // 2, H, W, K, dtype=torch.float64).softmax(-1).requires_grad_()
    inputs = (o, attn1, attn2, m.state_fusion.weight, m.state_fusion.bias, m.Ds)
    with use_backend("reference"):
        want = a2ssm_ref(m, o, attn1, attn2, windows)
        want_grads = torch.autograd.grad(want, inputs, torch.ones_like(want))
    got = m(o, attn1, attn2, windows)
    got_grads = torch.autograd.grad(got, inputs, torch.ones_like(got))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
