"""Preloaded by every worker of the warm local compute (`dask worker --preload`).

Its `dask_setup` imports, once per worker process and before the worker registers (so a
worker that takes tasks has them), what trials import first: Prefect and this package's flows
and tasks, scikit-learn's common estimators and the MLflow client. Importing the module itself
imports nothing heavy (the `dask worker` process that runs the nannies imports it too). A
module that is not installed is skipped; the trial that needs it says so.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

HEAVY_MODULES = (
    "prefect",
    "prefect_mltrain.flows",
    "prefect_mltrain.flows.sweep",
    "prefect_mltrain.flows.train_sklearn",
    "prefect_mltrain.tasks.sklearn",
    "prefect_mltrain.sweep.trial_run",
    "prefect_mltrain.tracking.client",
    "mlflow",
    "sklearn.svm",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.datasets",
    "optuna",
)


def preload() -> list[str]:
    """Import `HEAVY_MODULES`; return those that could not be imported."""
    missing = []
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        logging.getLogger("prefect_mltrain.compute").info("Warm worker: not preloaded (not installed): %s", missing)
    return missing


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process as it starts."""
    preload()
