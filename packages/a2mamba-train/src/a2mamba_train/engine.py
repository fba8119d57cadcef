"""The inner loops: evaluation, and the pieces of one training step (precision, loss, update)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from tqdm.auto import tqdm

from .distributed import DistInfo, all_reduce_sum

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def progress(iterable: Iterable, enabled: bool, **kwargs) -> tqdm:
    """A tqdm bar; when stderr is not a terminal (CI logs) it refreshes every few seconds only."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, mininterval=0.2 if interactive else 10.0, **kwargs)


def distill_loss(output: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the EMA model's (detached) softmax: the MESA self-distillation term."""
    soft_targets = teacher_logits.float().softmax(dim=-1).detach()
    return SoftTargetCrossEntropy()(output.float(), soft_targets)


def topk_correct(output: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> list[float]:
    maxk = min(max(ks), output.shape[-1])
    predicted = output.topk(maxk, dim=-1).indices
    hits = predicted.eq(target.unsqueeze(-1))
    return [float(hits[:, : min(k, maxk)].any(dim=-1).sum()) for k in ks]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    info: DistInfo,
    amp: str = "off",
    show_progress: bool = True,
    desc: str = "eval",
    channels_last: bool = False,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 (%) and mean cross-entropy over the whole evaluation set, summed across ranks.

    With ``num_classes`` also ``class_top1``: the top-1 (%) of each class (None for a class without images).
    """
    model.eval()
    loss_sum = correct1 = correct5 = count = 0.0
    class_hits = torch.zeros(num_classes or 0, dtype=torch.float64)
    class_count = torch.zeros(num_classes or 0, dtype=torch.float64)
    bar = progress(loader, show_progress and info.is_main, desc=desc, leave=False, unit="batch")
    for images, targets in bar:
        images = to_device(images, info.device, channels_last)
        targets = targets.to(info.device, non_blocking=True)
        with autocast(info.device, amp):
            output = model(images)
        output = output.float()
        loss_sum += float(F.cross_entropy(output, targets, reduction="sum"))
        hit1, hit5 = topk_correct(output, targets, (1, 5))
        correct1 += hit1
        correct5 += hit5
        count += targets.shape[0]
        if num_classes:
            labels = targets.cpu()
            right = output.argmax(dim=-1).cpu().eq(labels)
            class_count += torch.bincount(labels, minlength=num_classes)[:num_classes]
            class_hits += torch.bincount(labels[right], minlength=num_classes)[:num_classes]
        bar.set_postfix(top1=f"{100 * correct1 / count:.2f}", refresh=False)
    bar.close()
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], info)
    stats: dict[str, Any] = {"loss": float("nan"), "top1": 0.0, "top5": 0.0, "count": 0}
    if count:
        stats = {
            "loss": loss_sum / count,
            "top1": 100 * correct1 / count,
            "top5": 100 * correct5 / count,
            "count": int(count),
        }
    if num_classes:
        hits = all_reduce_sum(class_hits.tolist(), info)
        seen = all_reduce_sum(class_count.tolist(), info)
        stats["class_top1"] = [100 * h / n if n else None for h, n in zip(hits, seen, strict=True)]
    return stats


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def grads_finite(parameters) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)


def as_float(value: Any) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)
