"""MASS, the token mixer of every block (docs/architecture.md §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import Tensor, nn

from a2mamba_ops import na2d_av, na2d_qk_softmax

from .a2ssm import A2SSM
from .geometry import branch_windows, crop_bias
from .layers import LayerNorm2d, apply_rope, autocast_off, island_dtype


class TiedBiasTables(nn.ParameterList):
    """`rpb`: one bias table stored under keys `0` and `1` (+ the global table `2`).

    The reference builds its list from the same parameter twice, so the two keys
    are one tensor: training updates it with the gradients of both branches,
    `state_dict()` writes it twice, and a checkpoint whose two copies differ
    cannot come from that model, so loading one is an error rather than a
    silent "last key wins".

    `state_dict()` writes key `1` as a copy, not as a second view of the same
    memory: safetensors (and so `timm.models.save_for_hf` and `push_to_hf_hub`)
    refuses tensors that share memory. The table is small (heads/2 x (2K-1)^2).
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        shared = destination.get(prefix + "1")
        if not keep_vars and isinstance(shared, Tensor):
            destination[prefix + "1"] = shared.clone()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        first, second = state_dict.get(prefix + "0"), state_dict.get(prefix + "1")
        if isinstance(first, Tensor) and isinstance(second, Tensor) and first.shape == second.shape:
            if not torch.equal(first, second):
                error_msgs.append(
                    f"{prefix}0 and {prefix}1 must be equal: they are one shared bias table in A2Mamba, "
                    "but this checkpoint holds two different tensors"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        # load_state_dict(assign=True) swaps in the checkpoint's tensors one key at a time; re-tie them.
        if self._parameters.get("1") is not self._parameters.get("0"):
            self._parameters["1"] = self._parameters["0"]


def _softmax(logits: Tensor, like: Tensor) -> Tensor:
    """Softmax in at least float32, returned in `like`'s dtype."""
    return torch.softmax(logits, dim=-1, dtype=island_dtype(logits.dtype)).to(like.dtype)


# A leaf for torch.fx: the window geometry is Python arithmetic on the map's size, which a symbolic
# trace cannot evaluate; the traced graph calls the whole token mixer instead.
@register_notrace_module
class MASS(nn.Module):
    """Two neighbourhood-attention branches (+ A2SSM in local stages, full attention in the global stage)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        window_dilation: int = 1,
        use_rpb: bool = True,
        global_mode: bool = False,
        image_size: tuple[int, int] = (224, 224),
    ):
        super().__init__()
        if num_heads < 2 or num_heads % 2:
            raise ValueError(f"num_heads must be even (the two branches take half each), got {num_heads}")
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} must be divisible by num_heads {num_heads}")
        if window_size < 1 or window_size % 2 == 0:
            raise ValueError(f"window_size must be odd and positive, got {window_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = window_size
        self.window_dilation = window_dilation
        self.global_mode = global_mode

        self.qkv = nn.Conv2d(dim, dim * 3, 1)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.SiLU())
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.proj = nn.Sequential(LayerNorm2d(dim), nn.Conv2d(dim, dim, 1))
        self.ssm = None if global_mode else A2SSM(dim, num_heads)
        if use_rpb:
            shared = nn.Parameter(torch.zeros(num_heads // 2, 2 * window_size - 1, 2 * window_size - 1))
            tables = [shared, shared]
            if global_mode:
                L0 = (image_size[0] // 32) * (image_size[1] // 32)
                tables.append(nn.Parameter(torch.zeros(1, num_heads, L0, L0)))
            self.rpb = TiedBiasTables(tables)
        else:
            self.rpb = None

    def forward(self, x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
        B, C, H, W = x.shape
        n, c = self.num_heads, self.head_dim
        gate = self.gate(x)
        qkv = self.qkv(x)
        lepe = self.lepe(qkv[:, 2 * C :])
        # Channel m*C + i*c + j is element j of head i of q / k / v -> (3, B, heads, H, W, c): views, which
        # in the channels-last layout the model runs in keep each head's channels contiguous.
        q, k, v = qkv.permute(0, 2, 3, 1).unflatten(-1, (3, n, c)).permute(3, 0, 4, 1, 2, 5).unbind(0)
        half = n // 2
        # RoPE branch by branch: each call's copy is then the contiguous block of heads that branch's
        # kernel reads (a slice of all heads would be copied again there).
        q1, q2 = (apply_rope(part, sin, cos, self.scale) for part in (q[:, :half], q[:, half:]))
        k1, k2 = (apply_rope(part, sin, cos) for part in (k[:, :half], k[:, half:]))

        windows = branch_windows(H, W, self.window_size, self.window_dilation)
        bias = crop_bias(self.rpb[0], windows) if self.rpb is not None else None
        # Logits and softmax in one call (in float32 at least, as _softmax), returned in v's dtype.
        attn1 = na2d_qk_softmax(q1, k1, windows.kernel, windows.dilation1, bias).to(v.dtype)
        o1 = na2d_av(attn1, v[:, :half], windows.kernel, windows.dilation1)
        attn2 = na2d_qk_softmax(q2, k2, windows.kernel, windows.dilation2, bias).to(v.dtype)
        o2 = na2d_av(attn2, o1 + v[:, half:], windows.kernel, windows.dilation2)
        if self.global_mode:
            q, k = torch.cat([q1, q2], dim=1), torch.cat([k1, k2], dim=1)
            o = self._global_attention(q, k, torch.cat([o1, o2], dim=1))  # (B, heads, H, W, c)
            o = o.permute(0, 2, 3, 1, 4)
        else:
            # The heads side by side in one pass, straight into the channels-last layout the convolutions
            # of A2SSM and the norm after it read without a copy of their own.
            o = torch.cat([o1.permute(0, 2, 3, 1, 4), o2.permute(0, 2, 3, 1, 4)], dim=3)  # (B, H, W, heads, c)
        o = o.reshape(B, H, W, C).permute(0, 3, 1, 2)
        if self.ssm is not None:
            o = self.ssm(o, attn1, attn2, windows)

        o = self.norm(o) + lepe
        with autocast_off(x.device.type):
            dtype = island_dtype(o.dtype)
            o = (o.to(dtype) * gate.to(dtype)).to(o.dtype)
        return self.proj(o)

    def _global_attention(self, q: Tensor, k: Tensor, o: Tensor) -> Tensor:
        """Full attention over all pixels with the (resized) global bias table; values are `o`."""
        B, n, H, W, c = q.shape
        L = H * W
        attn = q.reshape(B, n, L, c) @ k.reshape(B, n, L, c).transpose(-2, -1)
        if self.rpb is not None:
            table = self.rpb[2]
            if table.shape[-1] != L:
                table = F.interpolate(table, size=(L, L), mode="bicubic", align_corners=False)
            attn = attn + table.to(attn.dtype)
        attn = _softmax(attn, o)
        return (attn @ o.reshape(B, n, L, c)).reshape(B, n, H, W, c)
