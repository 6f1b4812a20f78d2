"""The built-in scikit-learn path, end to end, and its bad inputs."""

import pytest

from prefect_mltrain.blocks import MlflowTracking, RegisteredModel
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows import train_sklearn
from tests.helpers import mlflow_runs_of


def test_fit_logs_and_registers_versions(compute, unique_name):
    first = train_sklearn(
        estimator="sklearn.ensemble.RandomForestClassifier",
        params={"n_estimators": 20, "max_depth": 3},
        dataset="wine",
        model_name=unique_name,
        compute=compute,
    )
    second = train_sklearn(
        estimator="sklearn.ensemble.RandomForestClassifier",
        params={"n_estimators": 5},
        dataset="wine",
        model_name=unique_name,
        compute=compute,
    )
    assert (first.model_block, second.model_block) == (f"{unique_name}-v1", f"{unique_name}-v2")
    assert first.metrics["accuracy"] > 0.8 and set(first.metrics) >= {"accuracy", "f1_macro", "log_loss"}
    run = MlflowTracking().client().get_run(first.mlflow_run_id)
    assert run.data.params["n_estimators"] == "20" and run.data.params["dataset"] == "wine"
    assert run.data.metrics["accuracy"] == first.metrics["accuracy"]
    alias, v1 = RegisteredModel.load(unique_name), RegisteredModel.version_of(unique_name, 1)
    assert alias.version == 2 and v1.params["n_estimators"] == "20"
    assert v1.framework == "sklearn" and v1.framework_version
    model = v1.load_model()
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    assert (model.predict(X) == y).mean() > 0.9


def test_regressor_on_csv(tmp_path, compute):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    lines = ["a,b,target"] + [f"{a},{b},{3 * a - b}" for a, b in x]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    result = train_sklearn(
        estimator="sklearn.linear_model.LinearRegression",
        dataset=str(tmp_path / "d.csv"),
        target_column="target",
        compute=compute,
    )
    assert result.metrics["r2"] > 0.99 and "rmse" in result.metrics


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"estimator": "sklearn.linear_model.LogisticRegresion"},
            r"cannot be imported.*'sklearn.ensemble.RandomForestClassifier'",
        ),
        ({"params": {"C": 1, "n_estimators": 3}}, r"\['n_estimators'\], which LogisticRegression does not take"),
        ({"dataset": "mnist"}, r"`dataset`='mnist' is neither a bundled dataset \['breast_cancer'"),
        ({"dataset": "/nope/d.csv"}, r"does not exist"),
        ({"test_size": 1.5}, r"`test_size` must lie in \(0, 1\), but got test_size=1.5"),
        ({"model_name": "Iris_Model"}, r"Fix: use 'iris-model'"),
    ],
)
def test_bad_input_is_refused_before_compute(kwargs, message):
    state = train_sklearn(return_state=True, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        state.result()
    assert mlflow_runs_of(str(state.state_details.flow_run_id)) == []


def test_param_values_are_checked_before_the_cluster_starts():
    """A scheduler that cannot be reached: the bad values are named before anything connects to it."""
    from prefect_mltrain.blocks import DaskCompute

    state = train_sklearn(
        params={"C": -1, "max_iter": -1, "solver": "lbfgs"},
        compute=DaskCompute(address="tcp://127.0.0.1:9"),
        return_state=True,
    )
    with pytest.raises(ConfigurationError) as caught:
        state.result()
    lines = str(caught.value).splitlines()
    assert lines == [
        "`params['C']`=-1: The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1 "
        "instead. Fix: give `C` a value that rule allows, or leave it out for the default (1.0).",
        "`params['max_iter']`=-1: The 'max_iter' parameter of LogisticRegression must be an int in the range "
        "[0, inf). Got -1 instead. Fix: give `max_iter` a value that rule allows, or leave it out for the default (100).",
    ]
    assert mlflow_runs_of(str(state.state_details.flow_run_id)) == []
