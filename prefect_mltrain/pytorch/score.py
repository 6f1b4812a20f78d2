"""Score a folder of images with a trained PyTorch classifier (seed 004's "Score Image Model")."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError


def score_folder(model_dir: str, image_dir: str, output_csv: str, batch_size: int = 32) -> dict[str, Any]:
    """Write one CSV row per image: path, prediction, its probability, every class's probability.

    Images inside class folders are labelled by their folder, and the accuracy is reported;
    loose images are scored without a label. Runs on the CPU unless a GPU is visible.

    Returns:
        `csv` (its path), `images`, `labelled`, `accuracy` (None without labels), `classes`.
    """
    import torch
    from PIL import Image

    from prefect_mltrain.pytorch.model import list_images, load_model_dir

    device = "cuda" if torch.cuda.is_available() else "cpu"
    classifier = load_model_dir(model_dir, device=device)
    paths, labels = list_images(image_dir)
    if not paths:
        raise ConfigurationError(f"`image_dir`={image_dir!r} holds no images to score.")
    out = Path(output_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    correct = labelled = 0
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["path", "label", "predicted_label", "probability", *[f"probability_{name}" for name in classifier.classes]]
        )
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            images = []
            for path in chunk:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            probabilities = classifier.predict_proba(images)
            for path, label, row in zip(chunk, labels[start : start + batch_size], probabilities):
                best = int(row.argmax())
                predicted = classifier.classes[best]
                if label is not None:
                    labelled += 1
                    correct += int(label == predicted)
                writer.writerow(
                    [
                        str(path.relative_to(image_dir)),
                        label or "",
                        predicted,
                        f"{row[best]:.6f}",
                        *[f"{p:.6f}" for p in row],
                    ]
                )
    return {
        "csv": str(out),
        "images": len(paths),
        "labelled": labelled,
        "accuracy": correct / labelled if labelled else None,
        "classes": classifier.classes,
    }


def fetch_model_dir(model_source: str, tracking_uri: str | None = None) -> str:
    """A local model directory: `model_source` itself, or its MLflow artifacts downloaded."""
    if "://" not in model_source and ":/" not in model_source:
        return model_source
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return str(mlflow.artifacts.download_artifacts(model_source))
