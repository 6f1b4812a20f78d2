"""The built-in scikit-learn path: bundled or CSV data, an estimator by import path, metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_mltrain._compat.sklearn_params import parameter_error
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.system.imports import import_from_path

BUNDLED_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")


@dataclass
class Dataset:
    """Features, target and a fingerprint of the data."""

    X: Any
    y: Any
    fingerprint: str
    name: str


def load_dataset(dataset: str, target_column: str | None = None) -> Dataset:
    """Load a scikit-learn bundled dataset by name, or a CSV file with a target column.

    Raises:
        ConfigurationError: Unknown name, missing file, or missing target column.
    """
    if dataset in BUNDLED_DATASETS:
        from sklearn import datasets

        X, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    elif dataset.endswith(".csv"):
        import pandas as pd

        path = Path(dataset).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"`dataset`={dataset!r} does not exist. Fix: give the path of a CSV file.")
        frame = pd.read_csv(path)
        if not target_column or target_column not in frame.columns:
            raise ConfigurationError(
                f"`target_column`={target_column!r} is not a column of {dataset!r} (columns: "
                f"{list(frame.columns)[:20]}). Fix: name the column to predict."
            )
        y = frame.pop(target_column).to_numpy()
        X = frame.to_numpy()
    else:
        raise ConfigurationError(
            f"`dataset`={dataset!r} is neither a bundled dataset {list(BUNDLED_DATASETS)} nor a "
            f"path ending in .csv. Fix: use one of those."
        )
    digest = hashlib.sha256(X.tobytes() + b"\0" + y.tobytes()).hexdigest()
    return Dataset(X, y, digest, dataset)


def make_estimator(estimator: str, params: dict[str, Any] | None = None) -> Any:
    """Instantiate the scikit-learn estimator at import path `estimator` with `params`.

    Raises:
        ConfigurationError: The path does not import, is no estimator, a param is unknown, or
            a param's value breaks scikit-learn's rules for it (`check_param_values`).
    """
    class_name = estimator.rpartition(".")[2]
    try:
        cls = import_from_path(estimator)
    except (ImportError, AttributeError, ValueError):
        raise ConfigurationError(
            f"`estimator`={estimator!r} cannot be imported. Fix: give a full import path such as "
            f"'sklearn.ensemble.RandomForestClassifier'."
        ) from None
    if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ConfigurationError(f"`estimator`={estimator!r} is not a scikit-learn estimator class.")
    model = cls()
    params = params or {}
    unknown = sorted(set(params) - set(model.get_params()))
    if unknown:
        raise ConfigurationError(
            f"`params` has {unknown}, which {class_name} does not take. Valid: {sorted(model.get_params())}."
        )
    check_param_values(cls, params)
    return model.set_params(**params)


def check_param_values(cls: type[Any], params: dict[str, Any]) -> None:
    """Check each value in `params` by scikit-learn's own rules for `cls`, before anything is fitted.

    Each parameter is checked on its own (the rest at their defaults), so every bad value is
    named, not only the first. Values of nested parameters (`estimator__C`) and estimators
    that declare no rules are left to `fit`.

    Raises:
        ConfigurationError: One line per bad value: the parameter, the value, the rule
            scikit-learn states, and the fix.

    >>> from sklearn.svm import SVC
    >>> check_param_values(SVC, {"C": 0.5, "kernel": "linear"})
    >>> check_param_values(SVC, {"C": 0, "kernel": "linr"})
    Traceback (most recent call last):
    ...
    prefect_mltrain.errors.ConfigurationError: `params['C']`=0: The 'C' parameter of SVC must be a float in the range (0.0, inf]. Got 0 instead. Fix: give `C` a value that rule allows, or leave it out for the default (1.0).
    `params['kernel']`='linr': The 'kernel' parameter of SVC must be a str among {...} or a callable. Got 'linr' instead. Fix: give `kernel` a value that rule allows, or leave it out for the default ('rbf').
    """
    defaults = cls().get_params(deep=False)
    problems = [
        f"`params[{name!r}]`={value!r}: {message} Fix: give `{name}` a value that rule allows, or leave "
        f"it out for the default ({defaults.get(name)!r})."
        for name, value, message in param_value_errors(cls, params.items())
    ]
    if problems:
        raise ConfigurationError("\n".join(problems))


def param_value_errors(cls: type[Any], values: Iterable[tuple[str, Any]]) -> list[tuple[str, Any, str]]:
    """`(parameter, value, scikit-learn's message)` for each value its rules for `cls` refuse.

    Each value is tried on its own, the other parameters at their defaults; nested parameters
    (`estimator__C`) are skipped.

    >>> from sklearn.linear_model import LogisticRegression
    >>> [(n, v) for n, v, _ in param_value_errors(LogisticRegression, [("C", 1.0), ("C", -2), ("max_iter", 100)])]
    [('C', -2)]
    """
    found = []
    for name, value in values:
        if "__" not in name:
            message = parameter_error(cls().set_params(**{name: value}))
            if message:
                found.append((name, value, message))
    return found


def score(model: Any, X: Any, y: Any) -> dict[str, float]:
    """Test metrics: accuracy, macro F1 (and log loss) for classifiers; r2, rmse, mae for regressors."""
    from sklearn import metrics
    from sklearn.base import is_classifier

    predicted = model.predict(X)
    if is_classifier(model):
        result = {
            "accuracy": float(metrics.accuracy_score(y, predicted)),
            "f1_macro": float(metrics.f1_score(y, predicted, average="macro")),
        }
        if hasattr(model, "predict_proba"):
            result["log_loss"] = float(metrics.log_loss(y, model.predict_proba(X), labels=model.classes_))
        return result
    return {
        "r2": float(metrics.r2_score(y, predicted)),
        "rmse": float(metrics.root_mean_squared_error(y, predicted)),
        "mae": float(metrics.mean_absolute_error(y, predicted)),
    }


def fit(
    estimator: str,
    params: dict[str, Any],
    dataset: str,
    target_column: str | None,
    test_size: float,
    random_state: int,
) -> dict[str, Any]:
    """Fit `estimator` on a train split of `dataset` and score it on the held-out split.

    Returns:
        `{"model", "metrics", "fingerprint", "n_train", "n_test"}`.
    """
    from sklearn.base import is_classifier
    from sklearn.model_selection import train_test_split

    data = load_dataset(dataset, target_column)
    model = make_estimator(estimator, params)
    stratify = data.y if is_classifier(model) else None
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=test_size, random_state=random_state, stratify=stratify
    )
    started = time.perf_counter()
    model.fit(X_train, y_train)
    metrics = {**score(model, X_test, y_test), "fit_seconds": time.perf_counter() - started}
    return {
        "model": model,
        "metrics": metrics,
        "fingerprint": data.fingerprint,
        "n_train": len(X_train),
        "n_test": len(X_test),
        "input_example": X_test[:5],
    }
