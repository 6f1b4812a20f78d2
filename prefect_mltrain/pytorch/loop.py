"""One epoch of the training loop: the optimisation steps, the validation pass, the metrics.

SGD steps with the learning rate set per iteration (`learning_rate_at`: linear warm-up, then
polynomial decay), a log line every `print_frequency` iterations, then a validation pass; in
distributed mode the sums are added up over the ranks, so every rank gets the group's metrics.
torch is imported inside the functions, on the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_mltrain.pytorch import ddp

LR_DECAY_POWER = 0.9  # the "poly" schedule; the factor reaches 0 at the last iteration
METRICS = ("train_loss", "val_loss", "top1_accuracy", "top5_accuracy", "train_images_per_sec", "learning_rate")


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


@dataclass(frozen=True)
class Loop:
    """What the epochs of one training process run on (built once by `train._build_loop`)."""

    model: Any  # in DistributedDataParallel in distributed mode
    optimizer: Any
    criterion: Any
    train_step: Callable[[Any, Any], Any]
    train_loader: Any
    valid_loader: Any
    device: Any
    amp: bool
    channels_last: bool
    base_lr: float
    epochs: int
    warmup_steps: int
    print_frequency: int
    top_k: int
    distributed: bool

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)


def run_epoch(loop: Loop, epoch: int, log: Any) -> dict[str, float]:
    """Train one epoch and validate; the group's metrics (the same on every rank)."""
    import torch

    if loop.distributed:
        loop.train_loader.sampler.set_epoch(epoch)
    loss_sum, seen, elapsed, lr = _train_epoch(loop, epoch, log)
    totals = _validate(loop)
    totals[4] = float(loss_sum)
    totals[5] = seen
    if loop.distributed:
        ddp.sum_over_ranks(totals)
    # Throughput of the whole group: images of all ranks over the slowest rank's time.
    slowest = torch.tensor([elapsed], dtype=torch.float64, device=loop.device)
    if loop.distributed:
        ddp.slowest_rank(slowest)
    return {
        "train_loss": float(totals[4]) / max(float(totals[5]), 1.0),
        "val_loss": float(totals[0]) / max(float(totals[3]), 1.0),
        "top1_accuracy": float(totals[1]) / max(float(totals[3]), 1.0),
        "top5_accuracy": float(totals[2]) / max(float(totals[3]), 1.0),
        "train_images_per_sec": float(totals[5]) / float(slowest),
        "learning_rate": lr,
    }


def _train_epoch(loop: Loop, epoch: int, log: Any) -> tuple[Any, int, float, float]:
    """The optimisation steps of one epoch: the loss sum (a tensor), images seen, seconds, last lr."""
    import torch

    steps = loop.steps_per_epoch
    warmup_iters, total_iters = loop.warmup_steps * steps, loop.epochs * steps
    loop.model.train()
    loss_sum = torch.zeros((), device=loop.device)
    seen = 0
    lr = loop.base_lr
    started = time.perf_counter()
    for i, (images, target) in enumerate(loop.train_loader):
        lr = learning_rate_at((epoch - 1) * steps + i, loop.base_lr, warmup_iters, total_iters)
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
        loss = loop.train_step(images, target)
        loss_sum += loss * len(target)
        seen += len(target)
        if loop.print_frequency and (i + 1) % loop.print_frequency == 0:
            log.info("epoch %d iter %d/%d loss %.4f lr %.5g", epoch, i + 1, steps, float(loss), lr)
    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)
    return loss_sum, seen, time.perf_counter() - started, lr


def _validate(loop: Loop) -> Any:
    """The validation sums of this rank: loss, top-1 hits, top-k hits, images, and two free slots."""
    import torch

    device = loop.device
    loop.model.eval()
    totals = torch.zeros(6, dtype=torch.float64, device=device)
    with torch.inference_mode(), torch.autocast(device.type, enabled=loop.amp and device.type == "cuda"):
        for images, target in loop.valid_loader:
            images, target = images.to(device), target.to(device)
            if loop.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits = loop.model(images).float()
            top1, topk = _topk_correct(logits, target, loop.top_k)
            totals += torch.tensor(
                [float(loop.criterion(logits, target)) * len(target), top1, topk, len(target), 0, 0],
                dtype=torch.float64,
                device=device,
            )
    return totals


def _topk_correct(logits: Any, target: Any, k: int) -> tuple[float, float]:
    top = logits.topk(k, dim=1).indices
    hits = top.eq(target.view(-1, 1))
    return float(hits[:, :1].sum()), float(hits.any(dim=1).sum())
