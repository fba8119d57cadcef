"""Process-group set-up from torchrun's environment, and the few collectives the trainer needs.

torchrun (single node or multi-node with ``--nnodes`` and a rendezvous endpoint) sets RANK,
WORLD_SIZE and LOCAL_RANK; without them this is a single process and every helper is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu (or auto)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(requested_device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sums of float64 values over all ranks (exact counts for metrics)."""
    if not info.enabled:
        return list(values)
    backend_device = info.device if info.device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_ranks_agree(flag: bool, info: DistInfo) -> bool:
    """True only if ``flag`` holds on every rank; all ranks must take the same branch after it."""
    if not info.enabled:
        return flag
    return all_reduce_sum([0.0 if flag else 1.0], info)[0] == 0.0


def broadcast_text(text: str | None, info: DistInfo) -> str | None:
    if not info.enabled:
        return text
    holder = [text]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
