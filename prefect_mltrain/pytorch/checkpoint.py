"""The training checkpoint: the progress of the loop, saved by rank 0 after each epoch.

`<checkpoint_dir>/checkpoint.pt` holds the model name and classes, the module's and the
optimiser's state dicts and the progress (`new_progress`); a later attempt given the same folder
resumes after the last finished epoch (`resume`). torch is imported inside the functions.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import InvalidModelDirectoryError

CHECKPOINT = "checkpoint.pt"


def new_progress() -> dict[str, Any]:
    """The progress of a fresh run: no epoch trained yet.

    >>> new_progress()["epoch"], new_progress()["stopped"]
    (0, False)
    """
    return {"epoch": 0, "history": [], "best_val_loss": math.inf, "bad_epochs": 0, "stopped": False}


def record_epoch(progress: dict[str, Any], epoch: int, metrics: dict[str, float], patience: int) -> bool:
    """Add a finished epoch to `progress`; True when `patience` epochs passed without a better val_loss.

    >>> p = new_progress()
    >>> [record_epoch(p, e, {"val_loss": loss}, patience=2) for e, loss in enumerate([1.0, 0.5, 0.7, 0.6], 1)]
    [False, False, False, True]
    >>> p["epoch"], p["best_val_loss"], p["bad_epochs"]
    (4, 0.5, 2)
    """
    if metrics["val_loss"] < progress["best_val_loss"]:
        progress["best_val_loss"], progress["bad_epochs"] = metrics["val_loss"], 0
    else:
        progress["bad_epochs"] += 1
    progress["history"].append({"epoch": epoch, **metrics})
    progress["epoch"] = epoch
    return bool(progress["bad_epochs"] >= patience)


def resume(root: Path, model: str, classes: tuple[str, ...], module: Any, optimizer: Any) -> dict[str, Any] | None:
    """Load `root`'s checkpoint into `module` and `optimizer` and return its progress; None if there is none.

    Raises:
        InvalidModelDirectoryError: The checkpoint is of another architecture or other classes.
    """
    import torch

    checkpoint = root / CHECKPOINT
    if not checkpoint.exists():
        return None
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if saved["model"] != model or tuple(saved["classes"]) != tuple(classes):
        raise InvalidModelDirectoryError(
            f"`checkpoint_dir`={str(root)!r} holds a checkpoint of {saved['model']!r} for classes "
            f"{list(saved['classes'])}, not of {model!r} for {list(classes)}. Fix: use "
            f"another `checkpoint_dir` (or None for a fresh one)."
        )
    module.load_state_dict(saved["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    progress: dict[str, Any] = saved["progress"]
    return progress


def save(
    root: Path, model: str, classes: tuple[str, ...], module: Any, optimizer: Any, progress: dict[str, Any]
) -> None:
    """Write `root`'s checkpoint; a kill mid-write leaves the previous one intact."""
    import torch

    from prefect_mltrain.pytorch.model import cpu_state_dict

    state = {
        "model": model,
        "classes": list(classes),
        "state_dict": cpu_state_dict(module),
        "optimizer": optimizer.state_dict(),
        "progress": progress,
    }
    path = root / CHECKPOINT
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
