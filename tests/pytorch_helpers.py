"""Tiny labelled image directories for the PyTorch tests: one solid colour (plus noise) per class."""

from __future__ import annotations

import random
from pathlib import Path

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def make_image_dir(
    root: Path, classes=("blue", "red"), per_class: int = 8, size: int = 32, seed: int = 0, labelled: bool = True
) -> Path:
    """Write `per_class` PNGs per class, in class folders (or loose when `labelled` is False)."""
    from PIL import Image

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in classes:
        folder = root / name if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        base = COLOURS[name]
        for i in range(per_class):
            image = Image.new("RGB", (size, size))
            image.putdata([tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in base) for _ in range(size * size)])
            image.save(folder / f"{name}_{i}.png")
    return root


class FailOnce:
    """A `report` hook that raises at `epoch` the first time (a crash mid-run), then never again."""

    def __init__(self, marker: Path, epoch: int) -> None:
        self.marker, self.epoch = Path(marker), epoch

    def __call__(self, epoch: int, metrics: dict) -> bool:
        if epoch == self.epoch and not self.marker.exists():
            self.marker.write_text("failed once")
            raise RuntimeError(f"simulated crash at epoch {epoch}")
        return False


class StopAfter:
    """A `report` hook that asks to stop after `epoch` (what a sweep's early termination does)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, epoch: int, metrics: dict) -> bool:
        return epoch >= self.epoch
