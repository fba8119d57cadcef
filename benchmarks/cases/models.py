"""Models for the throughput and accuracy benchmarks, and timm-style throughput loops.

The A2Mamba variants come from `a2mamba_models` (registered with timm on
import); the reference models (resnet50, convnext_tiny) from timm itself, so a
ratio between the two is measured in one run on one machine. Anything missing
raises NotImplementedError, which asv reports as a skip.

Throughput follows timm's `benchmark.py`: eval mode, random input, channels_last
and autocast on GPU, warm-up steps, then images per second from the median
step time (`timing.measure`), the device synchronised after every step. A
training step is forward, cross entropy against random labels, backward and an
SGD step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .timing import measure

A2MAMBA_VARIANTS = ["a2mamba_n", "a2mamba_t", "a2mamba_s", "a2mamba_b", "a2mamba_l"]
REFERENCE_MODELS = ["resnet50", "convnext_tiny"]
CPU_MODELS = ["a2mamba_n", "a2mamba_t", "resnet50"]  # the small variants, and a timm model of similar FLOPs
IMG_SIZE = 224


@dataclass(frozen=True)
class Setting:
    """Where and how a model runs: `cpu-b64`, `cuda-b128-amp`."""

    device: str
    batch: int
    amp: bool

    @classmethod
    def parse(cls, text: str) -> Setting:
        device, batch, *flags = text.split("-")
        if device not in ("cpu", "cuda") or not batch.startswith("b") or set(flags) - {"amp"}:
            raise ValueError(f"setting must look like 'cpu-b64' or 'cuda-b128-amp', got {text!r}")
        return cls(device, int(batch[1:]), "amp" in flags)


def create_model(name: str, setting: Setting, allowed_on_cpu: list[str] = CPU_MODELS) -> torch.nn.Module:
    """An eval-mode model on the setting's device; NotImplementedError when it cannot run here."""
    try:
        import timm
    except ImportError as exc:
        raise NotImplementedError(f"timm is not installed: {exc}") from None

    if setting.device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    if setting.device == "cpu" and name not in allowed_on_cpu:
        raise NotImplementedError(f"{name} is measured on GPU only (too slow for the CPU suite)")
    if name.startswith("a2mamba"):
        try:
            import a2mamba_models  # noqa: F401  (registers the variants with timm)
        except ImportError as exc:
            raise NotImplementedError(f"a2mamba_models is not installed: {exc}") from None
    if not timm.is_model(name):
        raise NotImplementedError(f"timm does not know {name!r} in this installation")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=1000)
    model = model.to(setting.device).eval()
    if setting.device == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model


def random_batch(setting: Setting, img_size: int = IMG_SIZE) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(setting.batch, 3, img_size, img_size, generator=gen).to(setting.device)
    return x.contiguous(memory_format=torch.channels_last) if setting.device == "cuda" else x


def _autocast(setting: Setting):
    return torch.autocast(setting.device, dtype=torch.float16, enabled=setting.amp)


def _sync(setting: Setting) -> None:
    if setting.device == "cuda":
        torch.cuda.synchronize()


def inference_step(model: torch.nn.Module, setting: Setting, img_size: int = IMG_SIZE) -> Callable[[], None]:
    x = random_batch(setting, img_size)

    def step():
        with torch.no_grad(), _autocast(setting):
            model(x)
        _sync(setting)

    return step


def train_step(model: torch.nn.Module, setting: Setting, img_size: int = IMG_SIZE) -> Callable[[], None]:
    model.train()
    x = random_batch(setting, img_size)
    target = torch.randint(0, 1000, (setting.batch,), generator=torch.Generator().manual_seed(0)).to(setting.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(setting.device, enabled=setting.amp)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(setting):
            loss = loss_fn(model(x), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(setting)

    return step


def images_per_second(step: Callable[[], None], batch: int, rounds: int, warmup: int, device: str = "cpu") -> float:
    """`batch` over the median seconds of one step (timm benchmark.py's figure, per step)."""
    return batch / measure(step, rounds=rounds, warmup=warmup, device=device).median


def throughput_rounds(setting: Setting) -> tuple[int, int]:
    """(warm-up, timed) steps, the same for every model of a setting: timm's 10 warm-up steps
    on GPU. On two CPU cores a batch of 64 takes seconds, so the suite's own warm-up step (in
    setup) stands in for the warm-up there."""
    if setting.device == "cuda":
        return 10, 20
    return (0, 3) if setting.batch == 1 else (0, 1)
