"""The DDP side of a training process: join and leave the process group, agree across ranks.

Every function here is a no-op question for a single process (the callers check
`world_size > 1`); torch is imported inside the functions, on the worker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect_mltrain.errors import DistributedTrainingError


def join_process_group(
    device: Any,
    rank: int,
    world_size: int,
    local_rank: int,
    master_addr: str | None,
    master_port: int | None,
    timeout: float,
    log: Any,
) -> None:
    """Set the rendezvous variables and join the process group (nccl on a GPU, gloo on a CPU).

    `timeout` is the process group's: a rank that dies fails the others instead of hanging them.
    """
    import torch
    import torch.distributed as dist

    os.environ.update(
        {
            "MASTER_ADDR": str(master_addr),
            "MASTER_PORT": str(master_port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(local_rank),
        }
    )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    log.info(
        "Joining process group: backend=%s rank=%d/%d local_rank=%d master=%s:%s pid=%d",
        backend,
        rank,
        world_size,
        local_rank,
        master_addr,
        master_port,
        os.getpid(),
    )
    dist.init_process_group(
        backend, init_method="env://", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout)
    )


def leave_process_group() -> None:
    """Destroy the process group if this process joined one (safe to call after a failed join)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: Any, device: Any) -> Any:
    """The module in `DistributedDataParallel` on this rank's device."""
    import torch

    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )


def sum_over_ranks(totals: Any) -> None:
    """Add up `totals` (a tensor) over all ranks, in place."""
    import torch.distributed as dist

    dist.all_reduce(totals)


def slowest_rank(elapsed: Any) -> None:
    """Replace `elapsed` (a one-element tensor) by its largest value over all ranks, in place."""
    import torch.distributed as dist

    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)


def follow_rank_0(rank: int, stop: bool, failure: Exception | None, epoch: int, device: Any) -> bool:
    """Rank 0's decision after an epoch, known to every rank: whether training stops.

    Rank 0 decides (patience, the report hook, or its own failure); all ranks follow at once
    instead of waiting out `dist_timeout` in the next collective. The other ranks raise
    `DistributedTrainingError` when rank 0 failed; rank 0 re-raises its own error itself.
    """
    import torch
    import torch.distributed as dist

    code = (2.0 if failure else 1.0 if stop else 0.0) if rank == 0 else 0.0
    flag = torch.tensor([code], device=device)
    dist.all_reduce(flag)
    if flag.item() >= 2 and failure is None:
        raise DistributedTrainingError(f"rank 0 failed after epoch {epoch}; its error is in rank_0.log")
    return bool(flag.item() == 1)


def barrier() -> None:
    """Wait for every rank (rank 0 saves the model before the group is left)."""
    import torch.distributed as dist

    dist.barrier()
