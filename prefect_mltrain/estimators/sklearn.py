"""The built-in scikit-learn path: bundled or CSV data, an estimator by import path, metrics."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        ConfigurationError: The path does not import, is no estimator, or a param is unknown.
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
    return model.set_params(**params)


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
