"""Train a torchvision classifier: one process, or one DDP rank per Dask worker.

`train_process` is the training loop of seed 004's "Train PyTorch Model": SGD with momentum,
linear warm-up for `warmup_steps` epochs then polynomial learning-rate decay, the learning rate
multiplied by the world size in distributed mode, early stopping after `patience` epochs without
a better validation loss, and a log line every `print_frequency` iterations.

Each epoch, rank 0 alone writes a checkpoint, logs the metrics to MLflow and the Prefect chart,
and asks the `report` hook whether to stop; a later attempt (a retry, or a new run given the same
`checkpoint_dir`) resumes after the last finished epoch. Every rank keeps its own log file,
`<checkpoint_dir>/logs/rank_<r>.log` (Azure ML's per-process driver logs), logged to MLflow too.

torch is imported inside the functions, on the worker.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect_mltrain._compat.glibc import training_malloc
from prefect_mltrain.errors import DistributedTrainingError, InvalidModelDirectoryError
from prefect_mltrain.tracking.client import mlflow_client

Reporter = Callable[[int, dict[str, float]], bool]
CHECKPOINT = "checkpoint.pt"
LR_DECAY_POWER = 0.9  # the "poly" schedule; the factor reaches 0 at the last iteration
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
METRICS = ("train_loss", "val_loss", "top1_accuracy", "top5_accuracy", "train_images_per_sec", "learning_rate")


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


def learning_rate_at(
    step: int, base_lr: float, warmup_iters: int, total_iters: int, power: float = LR_DECAY_POWER
) -> float:
    """Learning rate at iteration `step`: linear warm-up, then polynomial decay to zero.

    >>> learning_rate_at(0, 0.1, warmup_iters=10, total_iters=100)
    0.01
    >>> round(learning_rate_at(55, 0.1, warmup_iters=10, total_iters=100), 4)
    0.0536
    >>> learning_rate_at(0, 0.1, warmup_iters=0, total_iters=100)
    0.1
    """
    if step < warmup_iters:
        return base_lr * (step + 1) / warmup_iters
    span = max(total_iters - warmup_iters, 1)
    return base_lr * (1 - min(step - warmup_iters, span) / span) ** power


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


def _rank_logger(log_dir: Path, rank: int) -> tuple[logging.Logger, logging.Handler]:
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"prefect_mltrain.pytorch.rank{rank}.{os.getpid()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(log_dir / f"rank_{rank}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s rank" + str(rank) + " %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


class _Log:
    """Writes to the rank's log file and, inside a Prefect task, to the task run's logs."""

    def __init__(self, file_logger: logging.Logger) -> None:
        self.file_logger = file_logger
        try:
            from prefect.logging import get_run_logger

            self.prefect: Any = get_run_logger()
        except Exception:  # not in a Prefect run (benchmarks, plain calls)
            self.prefect = None

    def info(self, message: str, *args: Any) -> None:
        self.file_logger.info(message, *args)
        if self.prefect is not None:
            self.prefect.info(message, *args)


def _chart(history: list[dict[str, float]]) -> None:
    """Publish the per-epoch metrics as a Prefect table artifact (a new version each epoch)."""
    try:
        from prefect.artifacts import create_table_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return
        rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in history]
        create_table_artifact(
            rows, key="pytorch-training-metrics", description="Metrics per epoch of train_pytorch_model (rank 0)."
        )
    except Exception:  # the chart is a convenience; training must not fail for it
        logging.getLogger(__name__).debug("could not publish the metrics chart", exc_info=True)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _topk_correct(logits: Any, target: Any, k: int) -> tuple[float, float]:
    top = logits.topk(k, dim=1).indices
    hits = top.eq(target.view(-1, 1))
    return float(hits[:, :1].sum()), float(hits.any(dim=1).sum())


def make_train_step(
    module: Any, optimizer: Any, criterion: Any, device: Any, amp: bool, channels_last: bool
) -> Callable[[Any, Any], Any]:
    """One optimisation step on a batch (AMP and channels_last as asked); returns the loss tensor.

    Shared by the trainer and `benchmarks/gpu_resnet50.py`, so the benchmark measures this code.
    """
    import torch

    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(images: Any, target: Any) -> Any:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16):
            loss = criterion(module(images), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


# glibc `mallopt` parameters. Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
# fixes the mmap threshold at 128 KiB: every activation and gradient buffer is then mmapped and
# unmapped again, measured here at about 0.6-0.75x the throughput of a plain process on CPU.
def _mlflow_client(config: TrainConfig) -> Any:
    if not (config.tracking_uri and config.mlflow_run_id):
        return None

    return mlflow_client(tracking_uri=config.tracking_uri)


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
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from prefect_mltrain.pytorch.data import image_folder
    from prefect_mltrain.pytorch.model import build_model, load_initial_weights, save_model_dir

    root = Path(config.checkpoint_dir)
    file_logger, handler = _rank_logger(root / "logs", rank)
    log = _Log(file_logger)
    distributed = world_size > 1
    device = torch.device(
        select_device(
            torch.cuda.is_available(), torch.cuda.device_count(), local_rank, os.environ.get("CUDA_VISIBLE_DEVICES")
        )
    )
    amp = device.type == "cuda" if config.amp is None else config.amp
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    mlflow = _mlflow_client(config) if rank == 0 else None
    try:
        if distributed:
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
                backend,
                init_method="env://",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=config.dist_timeout),
            )
        _seed_everything(config.random_seed)
        train_set = image_folder(config.training_data, config.classes, config.image_size, train=True)
        valid_set = image_folder(config.validation_data, config.classes, config.image_size, train=False)
        generator = torch.Generator().manual_seed(config.random_seed)
        if distributed:
            train_sampler: Any = DistributedSampler(train_set, world_size, rank, shuffle=True, seed=config.random_seed)
            valid_sampler: Any = DistributedSampler(valid_set, world_size, rank, shuffle=False)
        else:
            train_sampler, valid_sampler = RandomSampler(train_set, generator=generator), None
        loader_args: dict[str, Any] = {
            "batch_size": config.batch_size,
            "num_workers": config.data_workers,
            "pin_memory": device.type == "cuda",
        }
        train_loader = DataLoader(train_set, sampler=train_sampler, drop_last=False, **loader_args)
        valid_loader = DataLoader(valid_set, sampler=valid_sampler, shuffle=False, **loader_args)

        module = build_model(config.model, len(config.classes))
        if config.initial_weights:
            skipped = load_initial_weights(module, config.initial_weights)
            log.info("Initial weights from %s (not used: %s)", config.initial_weights, skipped or "none")
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
        # The process group's batch is world_size times one process's batch (seed 004).
        base_lr = config.learning_rate * world_size
        optimizer = torch.optim.SGD(module.parameters(), lr=base_lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

        state: dict[str, Any] = {
            "epoch": 0,
            "history": [],
            "best_val_loss": math.inf,
            "bad_epochs": 0,
            "stopped": False,
        }
        checkpoint = root / CHECKPOINT
        if checkpoint.exists():
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
            if saved["model"] != config.model or tuple(saved["classes"]) != tuple(config.classes):
                raise InvalidModelDirectoryError(
                    f"`checkpoint_dir`={str(root)!r} holds a checkpoint of {saved['model']!r} for classes "
                    f"{list(saved['classes'])}, not of {config.model!r} for {list(config.classes)}. Fix: use "
                    f"another `checkpoint_dir` (or None for a fresh one)."
                )
            module.load_state_dict(saved["state_dict"])
            optimizer.load_state_dict(saved["optimizer"])
            state = saved["progress"]
            log.info("Resuming from checkpoint after epoch %d of %d (%s)", state["epoch"], config.epochs, checkpoint)
        resumed_from = state["epoch"]
        model: Any = module
        if distributed:
            model = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None
            )
        criterion = torch.nn.CrossEntropyLoss()
        train_step = make_train_step(model, optimizer, criterion, device, amp, channels_last)
        steps_per_epoch = len(train_loader)
        warmup_iters = config.warmup_steps * steps_per_epoch
        total_iters = config.epochs * steps_per_epoch
        k = min(5, len(config.classes))
        log.info(
            "Training %s on %s: %d classes, %d training / %d validation images, %d step(s) per "
            "epoch, lr %.5g, amp=%s, channels_last=%s",
            config.model,
            device,
            len(config.classes),
            len(train_set),
            len(valid_set),
            steps_per_epoch,
            base_lr,
            amp,
            channels_last,
        )
        trained = []
        while state["epoch"] < config.epochs and not state["stopped"]:
            epoch = state["epoch"] + 1
            if distributed:
                train_sampler.set_epoch(epoch)
            model.train()
            loss_sum = torch.zeros((), device=device)
            seen = 0
            started = time.perf_counter()
            for i, (images, target) in enumerate(train_loader):
                lr = learning_rate_at((epoch - 1) * steps_per_epoch + i, base_lr, warmup_iters, total_iters)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = train_step(images, target)
                loss_sum += loss * len(target)
                seen += len(target)
                if config.print_frequency and (i + 1) % config.print_frequency == 0:
                    log.info("epoch %d iter %d/%d loss %.4f lr %.5g", epoch, i + 1, steps_per_epoch, float(loss), lr)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            model.eval()
            totals = torch.zeros(6, dtype=torch.float64, device=device)
            with torch.inference_mode(), torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                for images, target in valid_loader:
                    images, target = images.to(device), target.to(device)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    logits = model(images).float()
                    top1, topk = _topk_correct(logits, target, k)
                    totals += torch.tensor(
                        [float(criterion(logits, target)) * len(target), top1, topk, len(target), 0, 0],
                        dtype=torch.float64,
                        device=device,
                    )
            totals[4] = float(loss_sum)
            totals[5] = seen
            if distributed:
                dist.all_reduce(totals)
            # Throughput of the whole group: images of all ranks over the slowest rank's time.
            slowest = torch.tensor([elapsed], dtype=torch.float64, device=device)
            if distributed:
                dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            metrics = {
                "train_loss": float(totals[4]) / max(float(totals[5]), 1.0),
                "val_loss": float(totals[0]) / max(float(totals[3]), 1.0),
                "top1_accuracy": float(totals[1]) / max(float(totals[3]), 1.0),
                "top5_accuracy": float(totals[2]) / max(float(totals[3]), 1.0),
                "train_images_per_sec": float(totals[5]) / float(slowest),
                "learning_rate": lr,
            }
            if metrics["val_loss"] < state["best_val_loss"]:
                state["best_val_loss"], state["bad_epochs"] = metrics["val_loss"], 0
            else:
                state["bad_epochs"] += 1
            stop = state["bad_epochs"] >= config.patience
            state["history"].append({"epoch": epoch, **metrics})
            state["epoch"] = epoch
            trained.append(epoch)
            log.info("epoch %d/%d: %s", epoch, config.epochs, {k_: round(v, 4) for k_, v in metrics.items()})
            failure: Exception | None = None
            if rank == 0:
                try:
                    if stop:
                        log.info("Early stop: validation loss has not improved for %d epoch(s)", config.patience)
                    if report is not None and not stop and report(epoch, dict(metrics)):
                        log.info("Stopped by the report hook after epoch %d", epoch)
                        stop = True
                    state["stopped"] = stop
                    _save_checkpoint(
                        checkpoint,
                        {
                            "model": config.model,
                            "classes": list(config.classes),
                            "state_dict": cpu_state(module),
                            "optimizer": optimizer.state_dict(),
                            "progress": state,
                        },
                    )
                    if mlflow is not None:
                        for key, value in metrics.items():
                            mlflow.log_metric(config.mlflow_run_id, key, value, step=epoch)
                    _chart(state["history"])
                except Exception as exc:  # re-raised below, once the other ranks know
                    failure = exc
            if distributed:
                # Rank 0 decides (patience, the report hook, or its own failure); all ranks follow
                # at once instead of waiting out `dist_timeout` in the next collective.
                code = (2.0 if failure else 1.0 if stop else 0.0) if rank == 0 else 0.0
                flag = torch.tensor([code], device=device)
                dist.all_reduce(flag)
                if flag.item() >= 2 and failure is None:
                    raise DistributedTrainingError(f"rank 0 failed after epoch {epoch}; its error is in rank_0.log")
                state["stopped"] = flag.item() == 1
            if failure is not None:
                raise failure
        result: dict[str, Any] = {
            "history": state["history"],
            "epochs_trained": trained,
            "resumed_from_epoch": resumed_from,
            "stopped_early": state["stopped"],
            "device": str(device),
            "world_size": world_size,
            "model_dir": None,
        }
        if rank == 0:
            model_dir = save_model_dir(
                root / "model",
                module,
                config.model,
                list(config.classes),
                config.image_size,
                {"trained_epochs": state["epoch"], "world_size": world_size},
            )
            result["model_dir"] = str(model_dir)
            if mlflow is not None:
                mlflow.log_artifacts(config.mlflow_run_id, str(model_dir), "model")
        if distributed:
            dist.barrier()
        log.info("Done: %d epoch(s) trained in this attempt", len(trained))
        return result
    except Exception as exc:
        file_logger.exception("rank %d failed: %s", rank, exc)
        raise
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
        handler.close()
        file_logger.removeHandler(handler)
        if config.tracking_uri and config.mlflow_run_id:
            _log_rank_file(config, root / "logs" / f"rank_{rank}.log")


def cpu_state(module: Any) -> dict[str, Any]:
    """The module's state dict on the CPU (see `pytorch_model.cpu_state_dict`)."""
    from prefect_mltrain.pytorch.model import cpu_state_dict

    return cpu_state_dict(module)


def _log_rank_file(config: TrainConfig, path: Path) -> None:
    try:
        mlflow_client(tracking_uri=config.tracking_uri).log_artifact(str(config.mlflow_run_id), str(path), "logs")
    except Exception:  # a log upload must not hide the training error
        logging.getLogger(__name__).warning("could not log %s to MLflow", path, exc_info=True)


def config_summary(config: TrainConfig) -> dict[str, Any]:
    """The config as MLflow params (paths and run ids left out)."""
    skip = {"classes", "tracking_uri", "mlflow_run_id"}
    return {k: v for k, v in asdict(config).items() if k not in skip}
