"""`train_pytorch_model`: seed 004's "Train PyTorch Model" on Dask, single process or DDP."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.pytorch.data import (
    ImageDirectory,
    check_architecture,
    check_initial_weights,
    check_same_classes,
    scan_image_directory,
)
from prefect_mltrain.pytorch.train import Reporter, TrainConfig, config_summary
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.tasks.pytorch_train import run_distributed, train_pytorch
from prefect_mltrain.tasks.register import register_model
from prefect_mltrain.tracking.links import TrackedRun, flow_run_info, mlflow_tags, publish_run_links


@dataclass(kw_only=True)
class PytorchTrainResult(TrackedRun):
    """What a `train_pytorch_model` run produced: the tracked run, the model folder and the epochs."""

    model_dir: str
    checkpoint_dir: str
    classes: list[str]
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_trained: list[int] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_early: bool = False
    attempts: int = 1
    world_size: int = 1


def _positive(**values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigurationError(f"`{name}` must be > 0, but got {name}={value!r}.")


# long: 25 parameters and their docstring are the user-facing form (the Prefect UI shows both); the body is ~60 lines
@flow(name="train-pytorch-model")
def train_pytorch_model(
    training_data: str,
    validation_data: str,
    model: str = "densenet121",
    initial_weights: str | None = None,
    epochs: int = 5,
    batch_size: int = 16,
    warmup_steps: int = 0,
    learning_rate: float = 0.001,
    random_seed: int = 1,
    patience: int = 3,
    print_frequency: int = 10,
    image_size: int = 224,
    nodes: int = 1,
    processes_per_node: int = 1,
    amp: bool | None = None,
    channels_last: bool | None = None,
    checkpoint_dir: str | None = None,
    max_restarts: int = 0,
    dist_timeout: float = 300.0,
    report: Reporter | None = None,
    model_name: str | None = None,
    compute: DaskCompute | str | None = None,
    tracking: MlflowTracking | str | None = None,
    experiment_name: str | None = None,
    display_name: str | None = None,
) -> PytorchTrainResult:
    """Train a torchvision classifier on labelled image directories, tracked and registered.

    Args:
        training_data: Labelled image directory (one folder per class) to train on.
        validation_data: Labelled image directory with the same classes, evaluated each epoch.
        model: torchvision architecture, e.g. `densenet121` or `resnet50` (untrained).
        initial_weights: A state-dict file (.pt/.pth) or a model directory to start from.
        epochs: Epochs to train (> 0).
        batch_size: Images per batch and process (> 0).
        warmup_steps: Epochs of linear learning-rate warm-up (>= 0), as in seed 004.
        learning_rate: Initial SGD learning rate (> 0); times the world size in distributed mode.
        random_seed: Seed of weights, shuffling and augmentation.
        patience: Stop after this many epochs without a lower validation loss (> 0).
        print_frequency: Log every this many iterations (> 0).
        image_size: Side in pixels images are resized to (>= 32).
        nodes: Hosts for distributed training (> 0).
        processes_per_node: Ranks per host, one Dask worker each (one per GPU with dask-cuda).
        amp: Mixed precision; None means on for GPUs, off on CPUs.
        channels_last: channels_last memory format; None means on for GPUs.
        checkpoint_dir: Where checkpoints, per-rank logs and the model go; None means a folder
            per flow run under the project home. A run given a killed run's folder resumes it.
        max_restarts: Attempts after a failed one, each resuming from the last checkpoint.
        dist_timeout: Seconds a rank waits for the others before the run fails.
        report: `report(epoch, metrics) -> should_stop`, called by rank 0 after each epoch
            (for sweeps); must be picklable, as it runs on a Dask worker.
        model_name: Register the trained model under this name (lowercase, dashes).
        compute: A DaskCompute, a saved one's name, or None for a local Dask cluster.
        tracking: An MlflowTracking, a saved one's name, or None for the local store.
        experiment_name: MLflow experiment; the tracking block's when None.
        display_name: Name of the MLflow run.

    Returns:
        The MLflow run, the metrics per epoch, the model directory and the registered block.
    """
    # The body checks the parameters, builds the `TrainConfig` from them and hands over to
    # `_train_tracked`. Everything is checked here, before any compute starts.
    _check_numbers(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        print_frequency=print_frequency,
        image_size=image_size,
        nodes=nodes,
        processes_per_node=processes_per_node,
        dist_timeout=dist_timeout,
        warmup_steps=warmup_steps,
        max_restarts=max_restarts,
    )
    if report is not None and not callable(report):
        raise ConfigurationError(f"`report` must be callable(epoch, metrics) -> bool, but got {report!r}.")
    check_architecture(model)
    weights = check_initial_weights(initial_weights)
    train_dir = scan_image_directory(training_data, "training_data")
    valid_dir = scan_image_directory(validation_data, "validation_data")
    check_same_classes(train_dir, valid_dir)
    if model_name is not None:
        check_model_name(model_name)
    # The folder, tracking URI and run id are filled in by `_train_tracked` once they exist.
    config = TrainConfig(
        model=model,
        training_data=train_dir.path,
        validation_data=valid_dir.path,
        classes=train_dir.classes,
        checkpoint_dir="",
        epochs=epochs,
        batch_size=batch_size,
        warmup_steps=warmup_steps,
        learning_rate=learning_rate,
        random_seed=random_seed,
        patience=patience,
        print_frequency=print_frequency,
        image_size=image_size,
        initial_weights=weights,
        amp=amp,
        channels_last=channels_last,
        dist_timeout=dist_timeout,
    )
    return _train_tracked(
        config,
        _Run(
            data=(train_dir, valid_dir),
            nodes=nodes,
            processes_per_node=processes_per_node,
            max_restarts=max_restarts,
            report=report,
            model_name=model_name,
            target=resolve_block(compute, DaskCompute, "compute"),
            tracker=resolve_block(tracking, MlflowTracking, "tracking"),
        ),
        checkpoint_dir,
        experiment_name,
        display_name,
    )


def _check_numbers(*, warmup_steps: int, max_restarts: int, **positive: int | float) -> None:
    """The numeric parameters: `positive` > 0 (in order), `image_size` >= 32, the others >= 0."""
    _positive(**positive)
    image_size = positive["image_size"]
    if image_size < 32:
        raise ConfigurationError(
            f"`image_size` must be >= 32 (DenseNet's and ResNet's downsampling leaves nothing of "
            f"smaller images), but got {image_size=}. Fix: use 32 or more; 224 is the ImageNet size."
        )
    if warmup_steps < 0 or max_restarts < 0:
        raise ConfigurationError(
            f"`warmup_steps` and `max_restarts` must be >= 0, but got {warmup_steps=}, {max_restarts=}."
        )


@dataclass(frozen=True)
class _Run:
    """The flow's parameters beyond `TrainConfig`: placement, retries, hook, registry, blocks."""

    data: tuple[ImageDirectory, ImageDirectory]  # training, validation (checked)
    nodes: int
    processes_per_node: int
    max_restarts: int
    report: Reporter | None
    model_name: str | None
    target: DaskCompute
    tracker: MlflowTracking

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


def _train_tracked(
    config: TrainConfig,
    run: _Run,
    checkpoint_dir: str | None,
    experiment_name: str | None,
    display_name: str | None,
) -> PytorchTrainResult:
    """Open the MLflow run, train (with restarts), publish the links, register the model."""
    tracker = run.tracker
    experiment_id = tracker.ensure_experiment(experiment_name)
    info = flow_run_info()
    folder = _checkpoint_folder(checkpoint_dir, info["id"])
    tags = {
        **mlflow_tags(info),
        "mltrain.framework": "torchvision",
        "mltrain.model": config.model,
        "mltrain.checkpoint_dir": str(folder),
    }
    with tracker.start_run(experiment_id, run_name=display_name or info["name"] or None, tags=tags) as mlflow_run:
        run_id = mlflow_run.info.run_id
        config = replace(
            config,
            checkpoint_dir=str(folder.resolve()),
            tracking_uri=tracker.resolved_tracking_uri(),
            mlflow_run_id=run_id,
        )
        _log_inputs(tracker.client(), run_id, config, run, folder)
        outcome, attempts = _train_with_restarts(config, run)
        history = outcome["history"]
        final = {k: v for k, v in history[-1].items() if k != "epoch"} if history else {}
        publish_run_links(
            tracker.run_url(experiment_id, run_id),
            run_id,
            tracker.ui_command(),
            {
                "MLflow run": run_id,
                "epochs": len(history),
                "checkpoint_dir": str(folder),
                **{k: f"{v:.4f}" for k, v in final.items()},
            },
        )
        result = PytorchTrainResult(
            mlflow_run_id=run_id,
            experiment_id=experiment_id,
            flow_run_url=info["url"],
            model_dir=outcome["model_dir"],
            checkpoint_dir=str(folder),
            classes=list(config.classes),
            history=history,
            metrics=final,
            epochs_trained=outcome["epochs_trained"],
            resumed_from_epoch=outcome["resumed_from_epoch"],
            stopped_early=outcome["stopped_early"],
            attempts=attempts,
            world_size=run.world_size,
        )
        if run.model_name:
            _register(result, run.tracker, run.model_name, run_id, info["id"] or None, outcome["device"])
    return result


def _checkpoint_folder(checkpoint_dir: str | None, flow_run_id: str | None) -> Path:
    """The checkpoint folder, made: the one given, or one per flow run under the project home."""
    folder = (
        Path(checkpoint_dir).expanduser()
        if checkpoint_dir
        else (MltrainSettings().home_dir / "pytorch" / (flow_run_id or "local"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_inputs(client: Any, run_id: str, config: TrainConfig, run: _Run, folder: Path) -> None:
    """The MLflow params and `classes.json`, and a line in the flow run's logs."""
    train_dir, valid_dir = run.data
    for key, value in {
        **config_summary(config),
        "nodes": run.nodes,
        "processes_per_node": run.processes_per_node,
        "world_size": run.world_size,
        "num_classes": len(train_dir.classes),
        "training_images": train_dir.size,
        "validation_images": valid_dir.size,
    }.items():
        client.log_param(run_id, key, "" if value is None else value)
    client.log_dict(run_id, {"classes": list(train_dir.classes)}, "classes.json")
    get_run_logger().info(
        "Training %s on %d classes %s: %d training and %d validation images, world size %d; checkpoints in %s",
        config.model,
        len(train_dir.classes),
        list(train_dir.classes)[:10],
        train_dir.size,
        valid_dir.size,
        run.world_size,
        folder,
    )


def _train_with_restarts(config: TrainConfig, run: _Run) -> tuple[dict[str, Any], int]:
    """Rank 0's outcome and the attempts made; each attempt after a failure resumes the checkpoint."""
    logger = get_run_logger()
    attempt = 0
    with run.target.task_runner() as runner:
        while True:
            attempt += 1
            try:
                if run.world_size == 1:
                    with _resources(run.target):
                        outcome = runner.submit(
                            train_pytorch, parameters={"config": config, "report": run.report}
                        ).result()
                else:
                    outcome = run_distributed(runner, config, run.nodes, run.processes_per_node, run.report)
                return outcome, attempt
            except Exception as exc:
                if attempt > run.max_restarts:
                    raise
                logger.warning(
                    "Attempt %d failed (%s: %s); attempt %d resumes from the last checkpoint",
                    attempt,
                    type(exc).__name__,
                    exc,
                    attempt + 1,
                )


def _register(
    result: PytorchTrainResult,
    tracker: MlflowTracking,
    model_name: str,
    run_id: str,
    flow_run_id: str | None,
    device: str,
) -> None:
    """Register the run's `model/` as `model_name`; the block and version go on `result`."""
    from importlib.metadata import version

    entry = register_model(
        tracker,
        model_name,
        run_id,
        "model",
        "torchvision",
        framework_version=version("torchvision"),
        flow_run_id=flow_run_id,
        resources={"gpus": 0 if device == "cpu" else 1},
    )
    result.model_block, result.model_version = entry.document_name, entry.version


def _resources(target: DaskCompute) -> Any:
    """Ask Dask for the GPUs a single-process training task needs (a no-op without GPUs)."""
    import contextlib

    import dask

    resources = target.worker_resources()
    return dask.annotate(resources=resources) if resources else contextlib.nullcontext()
