"""Prefect tasks: train a torchvision classifier in one process, or one DDP rank per Dask worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import task

from prefect_mltrain._compat.prefect_engine import prefect_dask_future
from prefect_mltrain.errors import DistributedTrainingError
from prefect_mltrain.jobs.distribution import RankPlacement, place_ranks
from prefect_mltrain.pytorch.train import Reporter, TrainConfig, train_process
from prefect_mltrain.system.net import free_port


@task(name="train-pytorch")
def train_pytorch(config: TrainConfig, report: Reporter | None = None) -> dict[str, Any]:
    """Prefect task: train in a single process (see `train_process`)."""
    return train_process(config, report=report)


@task(name="train-pytorch-rank", task_run_name="train-pytorch-rank-{rank}")
def train_pytorch_rank(
    config: TrainConfig,
    rank: int,
    world_size: int,
    local_rank: int,
    master_addr: str,
    master_port: int,
    report: Reporter | None = None,
) -> dict[str, Any]:
    """Prefect task: one DDP rank; its logs are this task run's logs and `logs/rank_<rank>.log`."""
    return train_process(
        config, rank, world_size, local_rank, master_addr, master_port, report=report if rank == 0 else None
    )


def run_distributed(
    runner: Any,
    config: TrainConfig,
    nodes: int,
    processes_per_node: int,
    report: Reporter | None = None,
    poll: float = 0.5,
) -> dict[str, Any]:
    """Run one `train_pytorch_rank` task per rank, each pinned to its own Dask worker.

    The ranks are placed before anything is submitted (too few workers fails at once). If a rank
    fails, the others fail within `dist_timeout` (the process group's timeout); after that grace
    period ranks still not finished are cancelled, so a dead worker never hangs the flow.

    Returns:
        Rank 0's result.

    Raises:
        DistributedTrainingError: A rank failed or was lost; the message names it and its log.
    """
    client = runner.client  # the runner's PrefectDaskClient (a distributed.Client)
    workers = (
        client.scheduler_info(n_workers=-1)["workers"]
        if _takes_n_workers(client)
        else client.scheduler_info()["workers"]
    )
    placements = place_ranks(workers, nodes, processes_per_node)
    futures = _submit_ranks(client, placements, config, report)
    _wait_for_ranks(futures, config.dist_timeout, poll)
    problems = _rank_problems(placements, futures)
    if problems:
        raise DistributedTrainingError(
            f"Distributed training with {len(placements)} ranks failed: "
            + "; ".join(problems)
            + f". Per-rank logs: {Path(config.checkpoint_dir) / 'logs'} (also under `logs/` in the MLflow "
            f"run). The last checkpoint is kept: a retry or a run with the same `checkpoint_dir` resumes."
        )
    return dict(futures[0].result())


def _submit_ranks(
    client: Any, placements: list[RankPlacement], config: TrainConfig, report: Reporter | None
) -> list[Any]:
    """One `train_pytorch_rank` task per placement, pinned to its own worker; their Prefect futures."""
    world_size = len(placements)
    master = placements[0]
    # Asked on the rank-0 worker, on every interface: the port must be free where MASTER_ADDR is.
    port = client.run(free_port, "", workers=[master.worker])[master.worker]
    futures = []
    for p in placements:
        # Pinned to its own worker: all ranks must run at the same time.
        dask_future = client.submit(
            train_pytorch_rank,
            parameters={
                "config": config,
                "rank": p.rank,
                "world_size": world_size,
                "local_rank": p.local_rank,
                "master_addr": master.host,
                "master_port": port,
                "report": report,
            },
            workers=[p.worker],
            allow_other_workers=False,
            pure=False,
            return_type="state",
        )
        futures.append(prefect_dask_future(dask_future))
    return futures


def _wait_for_ranks(futures: list[Any], dist_timeout: float, poll: float) -> None:
    """Wait until every rank is done, or cancel those still running `dist_timeout` after one failed."""
    deadline = None
    while True:
        done = [f.wrapped_future.done() for f in futures]
        if all(done):
            return
        if deadline is None and any(d and not futures[i].state.is_completed() for i, d in enumerate(done)):
            # The others fail within the process group's timeout; a rank that has not by then
            # is stuck (e.g. restricted to a worker that died) and is cancelled.
            deadline = time.monotonic() + dist_timeout + 10
        if deadline is not None and time.monotonic() > deadline:
            for i, f in enumerate(futures):
                if not done[i]:
                    f.wrapped_future.cancel()
            return
        time.sleep(poll)


def _rank_problems(placements: list[RankPlacement], futures: list[Any]) -> list[str]:
    """A line per rank that failed or was lost, naming it and its worker."""
    problems = []
    for p, f in zip(placements, futures):
        if not f.wrapped_future.done() or f.wrapped_future.cancelled():
            problems.append(f"rank {p.rank} on {p.worker}: lost (its worker died or hung; cancelled)")
            continue
        state = f.state
        if not state.is_completed():
            try:
                state.result()
                reason = state.message or state.name
            except BaseException as exc:  # noqa: BLE001 - we report every rank's failure
                reason = f"{type(exc).__name__}: {exc}"
            problems.append(f"rank {p.rank} on {p.worker}: {reason}")
    return problems


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters
