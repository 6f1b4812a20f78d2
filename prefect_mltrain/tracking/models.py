"""Save a scikit-learn model as an MLflow model folder, its requirements pinned from this Python.

MLflow's requirement inference (`mlflow.models.infer_pip_requirements`) loads the saved
model in a subprocess and watches its imports: 9-20 s per model on a small machine, for a
list we already know. The requirements here are the installed versions of MLflow, the
serializer and every package whose classes the model (or any estimator nested in it) is made
of: what inference finds for scikit-learn-style models, in milliseconds.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError

_SERIALIZERS = {"skops": "skops", "cloudpickle": "cloudpickle", "pickle": None}


def _estimators(model: Any) -> list[Any]:
    """`model` and every estimator among its (deep) parameters: pipeline steps, meta-estimators."""
    found = [model]
    get_params = getattr(model, "get_params", None)
    if callable(get_params):
        try:
            params = get_params(deep=True)
        except Exception:  # noqa: BLE001 - a third-party estimator with odd params: its own class is enough
            params = {}
        found += [value for value in params.values() if hasattr(value, "fit")]
    return found


def _pinned(distribution: str) -> str | None:
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return None


def model_requirements(model: Any, serialization_format: str = "skops") -> list[str]:
    """Pinned pip requirements that load `model` saved in `serialization_format`.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import LogisticRegression
    >>> reqs = model_requirements(make_pipeline(StandardScaler(), LogisticRegression()))
    >>> sorted(r.split("==")[0] for r in reqs)
    ['mlflow', 'scikit-learn', 'skops']
    """
    distributions = {"mlflow", "scikit-learn"}
    serializer = _SERIALIZERS.get(serialization_format)
    if serializer:
        distributions.add(serializer)
    for estimator in _estimators(model):
        distributions.update(_distributions_of(type(estimator).__module__.split(".")[0]))
    return sorted(filter(None, (_pinned(d) for d in distributions)))


_KNOWN = {"sklearn": ["scikit-learn"], "builtins": [], "__main__": []}


def _distributions_of(module: str) -> list[str]:
    """The distributions that install top-level `module` (by its own name first: a scan of
    every installed distribution's files, `packages_distributions`, takes seconds)."""
    if module in _KNOWN:
        return _KNOWN[module]
    try:
        importlib.metadata.version(module)
        return [module]
    except importlib.metadata.PackageNotFoundError:
        return _all_distributions().get(module, [])


@functools.cache
def _all_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def save_sklearn_model(
    model: Any,
    path: str | Path,
    *,
    serialization_format: str = "skops",
    input_example: Any = None,
    skops_trusted_types: list[str] | None = None,
) -> None:
    """`mlflow.sklearn.save_model` with explicit requirements (no inference; see the module)."""
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format=serialization_format,
        input_example=input_example,
        skops_trusted_types=skops_trusted_types if serialization_format == "skops" else None,
        pip_requirements=model_requirements(model, serialization_format),
    )


_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def check_model_name(name: str) -> str:
    """Check that `name` can name Prefect block documents (`<name>-v<N>`).

    >>> check_model_name("iris-classifier")
    'iris-classifier'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "my-model"
        raise ConfigurationError(
            f"`model_name`={name!r} must be lowercase letters and digits joined by single "
            f"dashes, since it names the Prefect blocks '<name>-v<N>'. Fix: use {suggestion!r}."
        )
    return name
