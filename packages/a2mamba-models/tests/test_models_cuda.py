"""The models on a GPU (skipped without one and the CUDA build of a2mamba-ops).

The CPU suite proves the function; here the same function must come out of the
CUDA kernels: float64 on the GPU against the reference implementation's golden
logits and against the CPU, gradients included, then the precision modes users
train in (bfloat16/float16 autocast) and the layouts they feed (channels_last).
Run by ci/gpu-check.sh.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch

from a2mamba_models import A2Mamba
from a2mamba_ops import available_backends

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (torch.cuda.is_available() and "cuda" in available_backends()),
        reason="needs a CUDA device and a2mamba-ops built with CUDA kernels",
    ),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    # cuDNN convolutions default to TF32 (10-bit mantissa): float32 comparisons would measure that, not us.
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def max_rel(actual, expected):
    return ((actual.cpu().double() - expected.cpu().double()).abs().max() / expected.abs().max()).item()


def test_golden_logits_in_float64_on_the_gpu(golden):
    model = A2Mamba(**golden["meta"]["constructor_kwargs"])
    model.load_state_dict(golden["state_dict"], strict=True)
    model = model.eval().double().cuda()
    with torch.no_grad():
        for name, x in golden["inputs"].items():
            logits = model(x.double().cuda())
            assert (logits.cpu() - golden["logits_fp64"][name]).abs().max().item() < 1e-10, name


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_float64_forward_and_gradients_equal_the_cpu(size):
    torch.manual_seed(0)
    cpu = timm.create_model("a2mamba_test").double().train()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    x_cpu, x_gpu = x.clone().requires_grad_(), x.cuda().requires_grad_()
    out_cpu, out_gpu = cpu(x_cpu), gpu(x_gpu)
    assert max_rel(out_gpu, out_cpu) < 1e-10
    cotangent = torch.randn_like(out_cpu)
    (out_cpu * cotangent).sum().backward()
    (out_gpu * cotangent.cuda()).sum().backward()
    assert max_rel(x_gpu.grad, x_cpu.grad) < 1e-9
    for (name, p_cpu), (_, p_gpu) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        if p_cpu.grad is not None and p_cpu.grad.abs().max() > 0:
            assert max_rel(p_gpu.grad, p_cpu.grad) < 1e-8, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_published_variant_under_autocast(dtype):
    torch.manual_seed(0)
    model = timm.create_model("a2mamba_t", num_classes=10).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cuda", dtype=dtype):
            low = model(x)
    assert (low.float() - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3
    # A training step (after the comparison: train mode moves the BatchNorm statistics).
    with torch.autocast("cuda", dtype=dtype):
        out = model.train()(x)
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_channels_last_and_features_on_the_gpu():
    torch.manual_seed(0)
    model = timm.create_model("a2mamba_test", features_only=True).cuda().eval()
    x = torch.randn(2, 3, 96, 128, device="cuda")
    with torch.no_grad():
        feats = model(x)
        feats_cl = model(x.contiguous(memory_format=torch.channels_last))
    assert [f.shape[-2:] for f in feats] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    for a, b in zip(feats, feats_cl, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
