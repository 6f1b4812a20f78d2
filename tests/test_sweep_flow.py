"""The sweep flow against the real Prefect server, Dask cluster and MLflow store."""

from __future__ import annotations

import pytest

from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform
from prefect_mltrain.sweep import examples


def test_trials_are_subflows_with_mlflow_children(compute, unique_name, prefect_client):
    from prefect_mltrain.flows import sweep

    result = sweep(
        trial=FunctionTrial(examples.trivial), search_space={"x": uniform(0, 1)},
        objective=Objective("score", "maximize"), limits=Limits(max_total_trials=4, max_concurrent_trials=2),
        seed=1, name=unique_name, compute=compute)
    assert result.best_trial is not None
    assert len(result.trials) == 4
    print(result)
