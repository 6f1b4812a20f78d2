"""`SklearnTrial`: the built-in scikit-learn fit (as in `train_sklearn`) as a sweep's trial."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.space import Choice, SearchSpace
from prefect_mltrain.sweep.trial_base import TrialContext, TrialSpec
from prefect_mltrain.tracking.client import mlflow_client
from prefect_mltrain.tracking.models import save_sklearn_model


@dataclass
class SklearnTrial(TrialSpec):
    """The built-in scikit-learn fit: the search space names the estimator's parameters."""

    estimator: str = "sklearn.linear_model.LogisticRegression"
    dataset: str = "iris"
    params: dict[str, Any] = field(default_factory=dict)
    target_column: str | None = None
    test_size: float = 0.25
    random_state: int = 0
    log_model: bool = False
    type: ClassVar[str] = "sklearn"
    framework: str = "sklearn"

    @property
    def model_artifact(self) -> str | None:  # type: ignore[override]
        return "model" if self.log_model else None

    def check(self, space: SearchSpace) -> None:
        from prefect_mltrain.estimators.sklearn import (
            BUNDLED_DATASETS,
            load_dataset,
            make_estimator,
            param_value_errors,
        )

        model = make_estimator(self.estimator, self.params)  # the fixed params' values checked too
        unknown = sorted(set(space) - set(model.get_params()))
        if unknown:
            raise ConfigurationError(
                f"`search_space` has {unknown}, which {self.estimator} does not take. Valid: "
                f"{sorted(model.get_params())}."
            )
        # Every value a choice offers, by scikit-learn's rules, before any trial draws it.
        offered = [(n, v) for n, d in space.distributions.items() if isinstance(d, Choice) for v in d.values]
        refused = param_value_errors(type(model), offered)
        if refused:
            raise ConfigurationError(
                "\n".join(
                    f"`search_space[{name!r}]` offers {value!r}: {message} Fix: drop {value!r} from its `values`."
                    for name, value, message in refused
                )
            )
        if not 0 < self.test_size < 1:
            raise ConfigurationError(f"`test_size` must lie in (0, 1), but got test_size={self.test_size!r}.")
        if self.dataset not in BUNDLED_DATASETS:
            load_dataset(self.dataset, self.target_column)

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        from sklearn.base import is_classifier
        from sklearn.model_selection import train_test_split

        from prefect_mltrain.estimators.sklearn import load_dataset, make_estimator, score

        data = load_dataset(self.dataset, self.target_column)
        model = make_estimator(self.estimator, {**self.params, **params})
        stratify = data.y if is_classifier(model) else None
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=self.test_size, random_state=self.random_state, stratify=stratify
        )
        started = time.perf_counter()
        model.fit(X_train, y_train)
        metrics = {**score(model, X_test, y_test), "fit_seconds": time.perf_counter() - started}
        if self.log_model and context.mlflow_run_id:
            client = mlflow_client(tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"))
            with tempfile.TemporaryDirectory() as tmp:
                save_sklearn_model(model, Path(tmp) / "model")  # no requirement inference per trial
                client.log_artifacts(context.mlflow_run_id, str(Path(tmp) / "model"), "model")
        return metrics

    def describe(self) -> str:
        return f"sklearn {self.estimator} on {self.dataset}"
