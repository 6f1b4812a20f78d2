"""Train a torchvision classifier: one process, or one DDP rank per Dask worker.

`train_process` is the training loop of seed 004's "Train PyTorch Model": SGD with momentum,
linear warm-up for `warmup_steps` epochs then polynomial learning-rate decay, the learning rate
multiplied by the world size in distributed mode, early stopping after `patience` epochs without
a better validation loss, and a log line every `print_frequency` iterations.

Each epoch, rank 0 alone writes a checkpoint, logs the metrics to MLflow and the Prefect chart,
and asks the `report` hook whether to stop; a later attempt (a retry, or a new run given the same
`checkpoint_dir`) resumes after the last finished epoch. Every rank keeps its own log file,
`<checkpoint_dir>/logs/rank_<r>.log` (Azure ML's per-process driver logs), logged to MLflow too.

This module puts the steps together; they live in `loop` (one epoch), `checkpoint` (progress,
save, resume), `ddp` (the process group) and `reporting` (rank logs, chart, MLflow).
torch is imported inside the functions, on the worker.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect_mltrain._compat.glibc import training_malloc
from prefect_mltrain.pytorch import checkpoint, ddp, reporting
from prefect_mltrain.pytorch.checkpoint import CHECKPOINT
from prefect_mltrain.pytorch.loop import LR_DECAY_POWER, METRICS, Loop, learning_rate_at, make_train_step, run_epoch

# Importable from here as before (benchmarks/gpu_resnet50.py uses `make_train_step`).
__all__ = [
    "CHECKPOINT",
    "LR_DECAY_POWER",
    "METRICS",
    "MOMENTUM",
    "WEIGHT_DECAY",
    "Reporter",
    "TrainConfig",
    "config_summary",
    "cpu_state",
    "learning_rate_at",
    "make_train_step",
    "select_device",
    "train_process",
]

Reporter = Callable[[int, dict[str, float]], bool]
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training process needs; checked in the flow before it is sent to workers."""

    model: str
    training_data: str
    validation_data: str
    classes: tuple[str, ...]
    checkpoint_dir: str
    epochs: int = 5
    batch_size: int = 16
    warmup_steps: int = 0
    learning_rate: float = 0.001
    random_seed: int = 1
    patience: int = 3
    print_frequency: int = 10
    image_size: int = 224
    initial_weights: str | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    data_workers: int = 0
    dist_timeout: float = 300.0
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None


def select_device(cuda_available: bool, device_count: int, local_rank: int, visible_devices: str | None) -> str:
    """The device of a rank.

    dask-cuda pins each worker by putting its own GPU first in `CUDA_VISIBLE_DEVICES`, so a
    pinned worker uses `cuda:0`; unpinned processes share the GPUs by local rank.

    >>> select_device(False, 0, 0, None)
    'cpu'
    >>> select_device(True, 4, 1, "1,2,3,0")
    'cuda:0'
    >>> select_device(True, 4, 1, None)
    'cuda:1'
    """
    if not cuda_available or device_count == 0:
        return "cpu"
    if visible_devices:
        return "cuda:0"
    return f"cuda:{local_rank % device_count}"


def train_process(
    config: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
    report: Reporter | None = None,
) -> dict[str, Any]:
    """Train in this process as rank `rank` of `world_size` and return rank 0's results.

    In distributed mode the rendezvous is set up here from `master_addr`/`master_port`
    (`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`), with `dist_timeout` on
    the process group so a rank that dies fails the others instead of hanging them.

    Returns:
        `history` (metrics per epoch), `epochs_trained` (this attempt), `resumed_from_epoch`,
        `stopped_early`, `model_dir`, `device`, `world_size`.
    """
    with training_malloc():
        return _train(config, rank, world_size, local_rank, master_addr, master_port, report)


@dataclass(frozen=True)
class _Rank:
    """Who this process is in the group, and where it trains."""

    config: TrainConfig
    rank: int
    world_size: int
    device: Any
    amp: bool
    channels_last: bool
    log: reporting.RankLog
    mlflow: Any  # rank 0's MLflow client when tracked, else None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def root(self) -> Path:
        return Path(self.config.checkpoint_dir)


def _train(
    config: TrainConfig,
    rank: int,
    world_size: int,
    local_rank: int,
    master_addr: str | None,
    master_port: int | None,
    report: Reporter | None,
) -> dict[str, Any]:
    import torch

    root = Path(config.checkpoint_dir)
    file_logger, handler = reporting.rank_logger(root / "logs", rank)
    device = torch.device(
        select_device(
            torch.cuda.is_available(), torch.cuda.device_count(), local_rank, os.environ.get("CUDA_VISIBLE_DEVICES")
        )
    )
    me = _Rank(
        config,
        rank,
        world_size,
        device,
        amp=device.type == "cuda" if config.amp is None else config.amp,
        channels_last=device.type == "cuda" if config.channels_last is None else config.channels_last,
        log=reporting.RankLog(file_logger),
        mlflow=reporting.tracking_client(config.tracking_uri, config.mlflow_run_id) if rank == 0 else None,
    )
    try:
        if me.distributed:
            ddp.join_process_group(
                device, rank, world_size, local_rank, master_addr, master_port, config.dist_timeout, me.log
            )
        return _train_in_group(me, report)
    except Exception as exc:
        file_logger.exception("rank %d failed: %s", rank, exc)
        raise
    finally:
        if me.distributed:
            ddp.leave_process_group()
        handler.close()
        file_logger.removeHandler(handler)
        if config.tracking_uri and config.mlflow_run_id:
            reporting.log_rank_file(config.tracking_uri, config.mlflow_run_id, root / "logs" / f"rank_{rank}.log")


def _train_in_group(me: _Rank, report: Reporter | None) -> dict[str, Any]:
    """Build, resume, train the epochs left, save the model: the body of `train_process`."""
    config = me.config
    _seed_everything(config.random_seed)
    train_loader, valid_loader = _loaders(me)
    module, optimizer, base_lr = _build_model(me)
    progress = checkpoint.resume(me.root, config.model, config.classes, module, optimizer)
    if progress is None:
        progress = checkpoint.new_progress()
    else:
        me.log.info(
            "Resuming from checkpoint after epoch %d of %d (%s)", progress["epoch"], config.epochs, me.root / CHECKPOINT
        )
    resumed_from = progress["epoch"]
    loop = _build_loop(me, module, optimizer, base_lr, train_loader, valid_loader)
    trained = _run_epochs(me, loop, module, progress, report)
    result: dict[str, Any] = {
        "history": progress["history"],
        "epochs_trained": trained,
        "resumed_from_epoch": resumed_from,
        "stopped_early": progress["stopped"],
        "device": str(me.device),
        "world_size": me.world_size,
        "model_dir": _save_model(me, module, progress["epoch"]) if me.rank == 0 else None,
    }
    if me.distributed:
        ddp.barrier()
    me.log.info("Done: %d epoch(s) trained in this attempt", len(trained))
    return result


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loaders(me: _Rank) -> tuple[Any, Any]:
    """The training and validation loaders; in distributed mode each rank reads its own shard."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from prefect_mltrain.pytorch.data import image_folder

    config = me.config
    train_set = image_folder(config.training_data, config.classes, config.image_size, train=True)
    valid_set = image_folder(config.validation_data, config.classes, config.image_size, train=False)
    generator = torch.Generator().manual_seed(config.random_seed)
    if me.distributed:
        train_sampler: Any = DistributedSampler(
            train_set, me.world_size, me.rank, shuffle=True, seed=config.random_seed
        )
        valid_sampler: Any = DistributedSampler(valid_set, me.world_size, me.rank, shuffle=False)
    else:
        train_sampler, valid_sampler = RandomSampler(train_set, generator=generator), None
    loader_args: dict[str, Any] = {
        "batch_size": config.batch_size,
        "num_workers": config.data_workers,
        "pin_memory": me.device.type == "cuda",
    }
    train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=False, **loader_args)
    valid_loader = DataLoader(valid_set, sampler=valid_sampler, shuffle=False, **loader_args)
    return train_loader, valid_loader


def _build_model(me: _Rank) -> tuple[Any, Any, float]:
    """The module on this rank's device (initial weights loaded), its SGD optimiser, the base lr."""
    import torch

    from prefect_mltrain.pytorch.model import build_model, load_initial_weights

    config = me.config
    module = build_model(config.model, len(config.classes))
    if config.initial_weights:
        skipped = load_initial_weights(module, config.initial_weights)
        me.log.info("Initial weights from %s (not used: %s)", config.initial_weights, skipped or "none")
    module.to(me.device)
    if me.channels_last:
        module.to(memory_format=torch.channels_last)
    # The process group's batch is world_size times one process's batch (seed 004).
    base_lr = config.learning_rate * me.world_size
    optimizer = torch.optim.SGD(module.parameters(), lr=base_lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    return module, optimizer, base_lr


def _build_loop(me: _Rank, module: Any, optimizer: Any, base_lr: float, train_loader: Any, valid_loader: Any) -> Loop:
    """What `loop.run_epoch` needs: the (DDP-wrapped) model, its train step, the loaders."""
    import torch

    config = me.config
    model = ddp.wrap(module, me.device) if me.distributed else module
    criterion = torch.nn.CrossEntropyLoss()
    loop = Loop(
        model=model,
        optimizer=optimizer,
        criterion=criterion,
        train_step=make_train_step(model, optimizer, criterion, me.device, me.amp, me.channels_last),
        train_loader=train_loader,
        valid_loader=valid_loader,
        device=me.device,
        amp=me.amp,
        channels_last=me.channels_last,
        base_lr=base_lr,
        epochs=config.epochs,
        warmup_steps=config.warmup_steps,
        print_frequency=config.print_frequency,
        top_k=min(5, len(config.classes)),
        distributed=me.distributed,
    )
    me.log.info(
        "Training %s on %s: %d classes, %d training / %d validation images, %d step(s) per "
        "epoch, lr %.5g, amp=%s, channels_last=%s",
        config.model,
        me.device,
        len(config.classes),
        len(train_loader.dataset),
        len(valid_loader.dataset),
        loop.steps_per_epoch,
        base_lr,
        me.amp,
        me.channels_last,
    )
    return loop


def _run_epochs(me: _Rank, loop: Loop, module: Any, progress: dict[str, Any], report: Reporter | None) -> list[int]:
    """Train the epochs left, until `config.epochs` or a stop; the epochs trained in this attempt."""
    config = me.config
    trained = []
    while progress["epoch"] < config.epochs and not progress["stopped"]:
        epoch = progress["epoch"] + 1
        metrics = run_epoch(loop, epoch, me.log)
        stop = checkpoint.record_epoch(progress, epoch, metrics, config.patience)
        trained.append(epoch)
        me.log.info("epoch %d/%d: %s", epoch, config.epochs, {k: round(v, 4) for k, v in metrics.items()})
        failure: Exception | None = None
        if me.rank == 0:
            try:
                _end_epoch_on_rank_0(me, loop, module, progress, epoch, metrics, stop, report)
            except Exception as exc:  # re-raised below, once the other ranks know
                failure = exc
        if me.distributed:
            progress["stopped"] = ddp.follow_rank_0(me.rank, stop, failure, epoch, me.device)
        if failure is not None:
            raise failure
    return trained


def _end_epoch_on_rank_0(
    me: _Rank,
    loop: Loop,
    module: Any,
    progress: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
    stop: bool,
    report: Reporter | None,
) -> None:
    """Rank 0 after an epoch: early stop or the report hook decide, checkpoint, MLflow, the chart."""
    config = me.config
    if stop:
        me.log.info("Early stop: validation loss has not improved for %d epoch(s)", config.patience)
    if report is not None and not stop and report(epoch, dict(metrics)):
        me.log.info("Stopped by the report hook after epoch %d", epoch)
        stop = True
    progress["stopped"] = stop
    checkpoint.save(me.root, config.model, config.classes, module, loop.optimizer, progress)
    reporting.log_metrics(me.mlflow, config.mlflow_run_id, metrics, epoch)
    reporting.publish_chart(progress["history"])


def _save_model(me: _Rank, module: Any, trained_epochs: int) -> str:
    """Rank 0: the model directory under `checkpoint_dir/model`, logged to the MLflow run as `model/`."""
    from prefect_mltrain.pytorch.model import save_model_dir

    config = me.config
    model_dir = save_model_dir(
        me.root / "model",
        module,
        config.model,
        list(config.classes),
        config.image_size,
        {"trained_epochs": trained_epochs, "world_size": me.world_size},
    )
    if me.mlflow is not None:
        me.mlflow.log_artifacts(config.mlflow_run_id, str(model_dir), "model")
    return str(model_dir)


def cpu_state(module: Any) -> dict[str, Any]:
    """The module's state dict on the CPU (see `pytorch_model.cpu_state_dict`)."""
    from prefect_mltrain.pytorch.model import cpu_state_dict

    return cpu_state_dict(module)


def config_summary(config: TrainConfig) -> dict[str, Any]:
    """The config as MLflow params (paths and run ids left out)."""
    skip = {"classes", "tracking_uri", "mlflow_run_id"}
    return {k: v for k, v in asdict(config).items() if k not in skip}
