"""``a2mamba-train`` under torchrun with a deliberately broken gradient reduction.

    torchrun --nproc-per-node 2 tests/ddp_faults.py FAULT [a2mamba-train options]

FAULT is ``sum`` (gradients summed over ranks instead of averaged) or ``rank0`` (every rank gets
rank 0's gradient: rank 1's shard of the batch is dropped). The DDP test runs this to prove that
its comparison with a one-process run notices a wrong reduction, so a passing DDP test means
something.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist


def _sum_hook(state, bucket):
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


def _rank0_hook(state, bucket):
    future = dist.broadcast(bucket.buffer(), src=0, async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


HOOKS = {"sum": _sum_hook, "rank0": _rank0_hook}


def main() -> int:
    fault, args = sys.argv[1], sys.argv[2:]
    hook = HOOKS[fault]
    correct = torch.nn.parallel.DistributedDataParallel

    class FaultyDDP(correct):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.register_comm_hook(None, hook)

    # The trainer looks DistributedDataParallel up on torch.nn.parallel when it wraps the model.
    torch.nn.parallel.DistributedDataParallel = FaultyDDP
    from a2mamba_train.cli import train_main

    return train_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
