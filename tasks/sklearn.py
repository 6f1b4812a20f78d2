"""Prefect task: fit a scikit-learn estimator on a dataset and score it."""

from __future__ import annotations

from typing import Any

from prefect import task

from prefect_mltrain.estimators.sklearn import fit


@task(name="fit-estimator")
def fit_estimator(
    estimator: str,
    params: dict[str, Any],
    dataset: str,
    target_column: str | None,
    test_size: float,
    random_state: int,
) -> dict[str, Any]:
    """Fit `estimator` on a train split of `dataset` and score it on the held-out split (see `fit`).

    Returns:
        `{"model", "metrics", "fingerprint", "n_train", "n_test", "input_example"}`.
    """
    return fit(estimator, params, dataset, target_column, test_size, random_state)
