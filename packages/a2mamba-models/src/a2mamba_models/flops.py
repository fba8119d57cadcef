"""Parameter and FLOP counts of an A2Mamba model, the way fvcore counts the reference.

FLOPs are derived analytically, module by module, from the model's structure
and the input size, with fvcore's conventions (a multiply-add is one FLOP):

- convolution: `output elements * in_channels / groups * kh * kw` (bias not counted);
- matmul / einsum / linear: `M * N * K`;
- BatchNorm in eval: 2 per element; LayerNorm with affine: 5 per element;
  adaptive average pooling: 1 per input element;
- activations, softmax, element-wise arithmetic, RoPE, interpolation: not counted
  (fvcore has no default handle for them);
- neighbourhood attention (NATTEN's fvcore handles): QK `B*heads*H*W*c*K^2`
  plus `B*heads*H*W*K^2` for the bias, AV `B*heads*H*W*c*K^2`;
- selective scan: `7 * B * L * D * N`.

No forward pass is run, so counting even the large model at high resolution is instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .geometry import branch_windows


def count_params(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor (the tied bias tables) counted once."""
    return sum(p.numel() for p in model.parameters())


def _conv_out(size: int, stride: int) -> int:
    # 3x3 convolution, padding 1
    return (size - 1) // stride + 1


@dataclass
class FlopReport:
    """FLOPs per part of the network (batch 1), and the total."""

    by_part: dict[str, int] = field(default_factory=dict)

    def add(self, part: str, flops: int) -> None:
        self.by_part[part] = self.by_part.get(part, 0) + int(flops)

    @property
    def total(self) -> int:
        return sum(self.by_part.values())


def _block_flops(report: FlopReport, part: str, block, H: int, W: int) -> None:
    mixer = block.token_mixer
    C, n = mixer.dim, mixer.num_heads
    L = H * W
    win = branch_windows(H, W, mixer.window_size, mixer.window_dilation)
    K2 = win.kernel[0] * win.kernel[1]

    report.add(f"{part}.cpe", 2 * L * C * 9)
    report.add(f"{part}.norm", 2 * 5 * L * C)
    if not isinstance(block.layer_scale1, nn.Identity):
        report.add(f"{part}.layer_scale", 2 * L * C)  # depthwise 1x1 convolutions in the reference

    # token mixer
    report.add(f"{part}.mixer.proj_in", L * C * 3 * C + L * C * C + 2 * L * C)  # qkv, gate conv + BN
    report.add(f"{part}.mixer.lepe", L * C * 25)
    bias = n * L * K2 if mixer.rpb is not None else 0
    report.add(f"{part}.mixer.neighbourhood_attention", 2 * L * C * K2 + bias)
    if mixer.global_mode:
        report.add(f"{part}.mixer.global_attention", 2 * L * L * C)
    if mixer.ssm is not None:
        ssm = mixer.ssm
        R, N = ssm.dt_rank, ssm.d_state
        report.add(f"{part}.mixer.ssm.conv", L * C * 25)
        report.add(f"{part}.mixer.ssm.proj", L * C * (R + 2 * N) + L * C * R)
        report.add(f"{part}.mixer.ssm.scan", 7 * L * C * N)
        report.add(f"{part}.mixer.ssm.aggregate", L * C * N * K2 + L * C * N * n)  # NA AV + state fusion
    report.add(f"{part}.mixer.proj_out", 5 * L * C + 5 * L * C + L * C * C)  # norm, proj LN + conv

    hidden = block.mlp.fc1.out_channels
    report.add(f"{part}.mlp", 2 * L * C * hidden + L * hidden * 9)


def count_flops(model: nn.Module, img_size: tuple[int, int] = (224, 224)) -> FlopReport:
    """FLOPs of one forward pass of `model` on a `1 x in_chans x H x W` input (fvcore conventions)."""
    H, W = img_size
    report = FlopReport()
    stem = model.patch_embed
    for i in (0, 3, 6, 9):
        conv, bn = stem[i], stem[i + 1]
        H, W = _conv_out(H, conv.stride[0]), _conv_out(W, conv.stride[1])
        report.add("patch_embed", H * W * conv.out_channels * conv.in_channels * 9 + 2 * H * W * bn.num_features)

    for s in range(4):
        stage = model.layers[2 * s]
        for block in stage.blocks:
            _block_flops(report, f"stage{s + 1}", block, H, W)
        down = model.layers[2 * s + 1]
        if isinstance(down, nn.Sequential):
            conv = down[0]
            H, W = _conv_out(H, 2), _conv_out(W, 2)
            report.add(
                f"downsample{s + 1}", H * W * conv.out_channels * conv.in_channels * 9 + 2 * H * W * conv.out_channels
            )

    head = model.classifier
    if isinstance(head, nn.Sequential):
        proj = head[0].out_channels
        report.add("classifier", H * W * head[0].in_channels * proj + 2 * H * W * proj + H * W * proj)
        if isinstance(head[4], nn.Conv2d):
            report.add("classifier", proj * head[4].out_channels)
    return report
