"""Prefect task: score a folder of images with a trained classifier."""

from __future__ import annotations

from typing import Any

from prefect import task

from prefect_mltrain.pytorch.score import fetch_model_dir, score_folder


@task(name="score-images")
def score_images(
    model_source: str, image_dir: str, output_csv: str, batch_size: int = 32, tracking_uri: str | None = None
) -> dict[str, Any]:
    """Prefect task: fetch the model directory (local path or `runs:/...` URI) and score the folder."""
    return score_folder(fetch_model_dir(model_source, tracking_uri), image_dir, output_csv, batch_size)
