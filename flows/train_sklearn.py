"""`train_sklearn`: fit a scikit-learn estimator on Dask, log it to MLflow, register it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.estimators.sklearn import BUNDLED_DATASETS, load_dataset, make_estimator
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.tasks.register import register_model
from prefect_mltrain.tasks.sklearn import fit_estimator
from prefect_mltrain.tracking.links import TrackedRun, flow_run_info, mlflow_tags, publish_run_links
from prefect_mltrain.tracking.models import save_sklearn_model


class FitResult(TrackedRun):
    """A fitted estimator's MLflow run, test metrics and registered model."""


def _trusted_types(model: Any) -> list[str]:
    """Types skops must trust to load `model` again: we trained it, so its own types are trusted."""
    import skops.io

    return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def _log_fit(client: Any, run_id: str, params: dict[str, Any], fitted: dict[str, Any]) -> None:
    """Log the fit's parameters, test metrics and model (`model/`, skops-loadable) to the run."""
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for key, value in fitted["metrics"].items():
        client.log_metric(run_id, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        save_sklearn_model(
            fitted["model"],
            Path(tmp) / "model",
            input_example=fitted["input_example"],
            skops_trusted_types=_trusted_types(fitted["model"]),
        )
        client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")


# long: its docstring is the user-facing parameter documentation; the code is under 80 lines
@flow(name="train-sklearn")
def train_sklearn(
    estimator: str = "sklearn.linear_model.LogisticRegression",
    params: dict[str, Any] | None = None,
    dataset: str = "iris",
    target_column: str | None = None,
    test_size: float = 0.25,
    random_state: int = 0,
    model_name: str | None = None,
    compute: DaskCompute | str | None = None,
    tracking: MlflowTracking | str | None = None,
    experiment_name: str | None = None,
    display_name: str | None = None,
) -> FitResult:
    """Fit a scikit-learn estimator given by import path and params, tracked and registered.

    Args:
        estimator: Import path of the estimator class.
        params: Its constructor parameters, e.g. `{"C": 0.5, "max_iter": 500}`.
        dataset: A bundled dataset (iris, digits, wine, breast_cancer, diabetes) or a CSV path.
        target_column: Column to predict, for a CSV dataset.
        test_size: Fraction held out for the test metrics, in (0, 1).
        random_state: Seed of the train/test split.
        model_name: Register the fitted model under this name (lowercase, dashes).
        compute: A DaskCompute, a saved one's name, or None for a Dask cluster of one thread in
            this process (`DaskCompute.in_process`: a single fit gains nothing from worker
            processes but their start-up).
        tracking: An MlflowTracking, a saved one's name, or None for the local store.
        experiment_name: MLflow experiment; the tracking block's when None.
        display_name: Name of the MLflow run.

    Returns:
        The MLflow run id, the test metrics, and the registered model's block name.
    """
    logger = get_run_logger()
    if not 0 < test_size < 1:
        raise ConfigurationError(f"`test_size` must lie in (0, 1), but got {test_size=}.")
    params = dict(params or {})
    make_estimator(estimator, params)  # bad paths and params fail before compute starts
    if dataset not in BUNDLED_DATASETS:
        load_dataset(dataset, target_column)  # a bad CSV path or target column fails here
    if model_name is not None:
        check_model_name(model_name)
    target = DaskCompute.in_process(threads=1) if compute is None else resolve_block(compute, DaskCompute, "compute")
    tracker = resolve_block(tracking, MlflowTracking, "tracking")
    experiment_id = tracker.ensure_experiment(experiment_name)
    info = flow_run_info()
    with target.task_runner() as runner:
        fitted = runner.submit(
            fit_estimator,
            parameters={
                "estimator": estimator,
                "params": params,
                "dataset": dataset,
                "target_column": target_column,
                "test_size": test_size,
                "random_state": random_state,
            },
        ).result()
    import sklearn

    client = tracker.client()
    tags = {
        **mlflow_tags(info),
        "mltrain.estimator": estimator,
        "mltrain.dataset": dataset,
        "mltrain.data_fingerprint": fitted["fingerprint"],
    }
    with tracker.start_run(experiment_id, run_name=display_name or info["name"] or None, tags=tags) as run:
        run_id = run.info.run_id
        logged = dict(params, estimator=estimator, dataset=dataset, test_size=test_size, random_state=random_state)
        _log_fit(client, run_id, logged, fitted)
        url = tracker.run_url(experiment_id, run_id)
        publish_run_links(
            url,
            run_id,
            tracker.ui_command(),
            {"MLflow run": run_id, **{k: f"{v:.4f}" for k, v in fitted["metrics"].items()}},
        )
        logger.info("Test metrics: %s", {k: round(v, 4) for k, v in fitted["metrics"].items()})
        result = FitResult(
            mlflow_run_id=run_id, experiment_id=experiment_id, flow_run_url=info["url"], metrics=dict(fitted["metrics"])
        )
        if model_name:
            entry = register_model(
                tracker,
                model_name,
                run_id,
                "model",
                "sklearn",
                framework_version=sklearn.__version__,
                flow_run_id=info["id"] or None,
                data_fingerprint=fitted["fingerprint"],
            )
            result.model_block, result.model_version = entry.document_name, entry.version
    return result
