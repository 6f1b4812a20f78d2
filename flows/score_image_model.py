"""`score_image_model`: predict the classes of a folder of images with a trained PyTorch model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.model import RegisteredModel
from prefect_mltrain.errors import ConfigurationError, InvalidModelDirectoryError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.tasks.pytorch_score import score_images
from prefect_mltrain.tracking.links import flow_run_info


@dataclass
class ScoreResult:
    """Where the predictions are, and how accurate they were when the images had labels."""

    csv_path: str
    images: int
    labelled: int
    accuracy: float | None
    classes: list[str] = field(default_factory=list)


@flow(name="score-image-model")
def score_image_model(
    model: RegisteredModel | str,
    image_dir: str,
    output_csv: str | None = None,
    batch_size: int = 32,
    compute: DaskCompute | str | None = None,
) -> ScoreResult:
    """Score every image under `image_dir` with a model trained by `train_pytorch_model`.

    Args:
        model: A RegisteredModel, the name of a saved one (`<name>` or `<name>-v<N>`), or the
            path of a model directory.
        image_dir: Images to score; images inside class folders are labelled by the folder.
        output_csv: Where the predictions go; None means a file under the project home.
        batch_size: Images per forward pass (> 0).
        compute: A DaskCompute, a saved one's name, or None for a local Dask cluster.

    Returns:
        The CSV path (path, label, predicted_label, probability, probability_<class>...), the
        image counts and the accuracy on the labelled images (None when there are none).
    """
    logger = get_run_logger()
    if batch_size <= 0:
        raise ConfigurationError(f"`batch_size` must be > 0, but got {batch_size=}.")
    if not Path(image_dir).is_dir():
        raise ConfigurationError(f"`image_dir`={image_dir!r} must be an existing directory of images.")
    tracking_uri = None
    if isinstance(model, str) and Path(model).expanduser().is_dir():
        source = str(Path(model).expanduser().resolve())
    else:
        entry = resolve_block(model, RegisteredModel, "model")
        if entry.framework != "torchvision":
            raise InvalidModelDirectoryError(
                f"`model` {entry.document_name!r} is a {entry.framework!r} model, but "
                f"score_image_model needs one trained by train_pytorch_model (framework "
                f"'torchvision')."
            )
        source, tracking_uri = entry.source_uri, entry.tracking_uri
    info = flow_run_info()
    out = output_csv or str(MltrainSettings().home_dir / "scores" / (info["id"] or "local") / "predictions.csv")
    target = resolve_block(compute, DaskCompute, "compute")
    with target.task_runner() as runner:
        scored = runner.submit(
            score_images,
            parameters={
                "model_source": source,
                "image_dir": str(Path(image_dir).resolve()),
                "output_csv": out,
                "batch_size": batch_size,
                "tracking_uri": tracking_uri,
            },
        ).result()
    accuracy = scored["accuracy"]
    shown = "n/a (no labels)" if accuracy is None else f"{accuracy:.4f}"
    logger.info(
        "Scored %d images (%d labelled), accuracy %s; predictions in %s",
        scored["images"],
        scored["labelled"],
        shown,
        scored["csv"],
    )
    create_markdown_artifact(
        key="image-scores",
        markdown=f"| | |\n|---|---|\n| images | {scored['images']} |\n| labelled | {scored['labelled']} |\n"
        f"| accuracy | {shown} |\n| predictions | `{scored['csv']}` |\n",
        description="score_image_model results.",
    )
    return ScoreResult(scored["csv"], scored["images"], scored["labelled"], accuracy, list(scored["classes"]))
