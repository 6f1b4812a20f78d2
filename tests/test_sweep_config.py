"""Objective and limits validation, and the combined pre-flight check of a sweep."""

from __future__ import annotations

import pytest
import sweep_examples as examples

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows.sweep import check_sweep
from prefect_mltrain.sweep import BanditPolicy, FunctionTrial, Limits, Objective, SklearnTrial, choice, uniform

GOOD = dict(
    trial=FunctionTrial(examples.trivial),
    search_space={"x": uniform(0, 1)},
    objective=Objective("score"),
    sampling_algorithm_="random",
    limits=None,
    early_termination=None,
    seed=0,
    name="ok-name",
    register_best_model_as=None,
)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"search_space": {}}, ["non-empty"]),
        ({"search_space": {"x": {"type": "beta"}}}, ["'beta'", "Valid types"]),
        ({"search_space": {"x": uniform(0, 1)}, "sampling_algorithm_": "grid"}, ["grid", "{'x': 'uniform'}"]),
        ({"sampling_algorithm_": "annealing"}, ["'annealing'", "'bayesian'", "'sobol'"]),
        (
            {"limits": Limits(max_total_trials=2, max_concurrent_trials=3)},
            ["`max_concurrent_trials` <= `max_total_trials`", "max_concurrent_trials=3", "Fix"],
        ),
        ({"limits": Limits(max_total_trials=-1)}, ["max_total_trials=-1"]),
        ({"limits": {"max_total_trials": 4, "timeout_seconds": -5}}, ["timeout_seconds=-5"]),
        ({"limits": {"max_total_trials": 4, "trial_timeout_seconds": 0}}, ["trial_timeout_seconds=0"]),
        ({"limits": {"max_total_trials": 4, "trial_retries": -1}}, ["trial_retries=-1"]),
        ({"limits": {"max_total_trials": 4, "max_lost_trial_retries": -1}}, ["max_lost_trial_retries=-1", "Fix"]),
        ({"limits": Limits(max_lost_trial_retries=1.5)}, ["integer >= 0", "max_lost_trial_retries=1.5", "Fix"]),
        ({"limits": Limits(max_lost_trial_retries=True)}, ["max_lost_trial_retries=True"]),
        ({"limits": {"max_trials": 4}}, ["takes", "max_total_trials"]),
        ({"objective": Objective("score", "maximise")}, ["goal='maximise'", "maximize"]),
        ({"objective": Objective("")}, ["primary_metric=''"]),
        ({"objective": None}, ["`objective` is required"]),
        (
            {"sampling_algorithm_": "bayesian", "early_termination": BanditPolicy(slack_factor=0.1)},
            ["cannot act with `sampling_algorithm`='bayesian'", "Fix"],
        ),
        ({"early_termination": {"type": "bandit"}}, ["slack_factor"]),
        ({"name": "My Sweep"}, ["`name`='My Sweep'", "'my-sweep'"]),
        ({"register_best_model_as": "best"}, ["logs none", "model_artifact"]),
        ({"trial": SklearnTrial(), "search_space": {"gamma": uniform(0, 1)}}, ["['gamma']", "does not take"]),
        ({"trial": 42}, ["`trial` must be"]),
        ({"trial": {"type": "notebook"}}, ["'notebook'", "Valid types"]),
        (
            {"trial": {"type": "command", "command": "python t.py --lr ${{search_space.lr}}"}},
            ["['lr']", "does not define"],
        ),
        ({"trial": {"type": "command", "command": "python t.py"}}, ["never uses them", "${{search_space.x}}"]),
    ],
)
def test_bad_input_is_refused_with_rule_value_and_fix(change, words):
    with pytest.raises(ConfigurationError) as info:
        check_sweep(**{**GOOD, **change})
    for word in words:
        assert word in str(info.value), str(info.value)


def test_good_input_passes_and_asha_is_allowed_with_bayesian():
    check_sweep(**GOOD)
    check_sweep(**{**GOOD, "sampling_algorithm_": "bayesian", "early_termination": {"type": "asha"}})
    check_sweep(**{**GOOD, "search_space": {"x": choice([1, 2])}, "sampling_algorithm_": "grid"})


def test_objective_helpers():
    o = Objective("loss", "minimize")
    o.check()
    assert o.better(0.1, 0.2) and o.reached(0.05, 0.1) and not o.reached(0.2, 0.1)


DEPLOYMENT_PARAMETERS = {
    "name": "iris-logreg",
    "trial": {
        "type": "sklearn",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "dataset": "iris",
        "params": {"max_iter": 500},
        "log_model": True,
    },
    "search_space": {
        "C": {"type": "loguniform", "low": 0.001, "high": 100.0},
        "fit_intercept": {"type": "choice", "values": [True, False]},
    },
    "objective": {"primary_metric": "accuracy", "goal": "maximize"},
    "sampling_algorithm": "random",
    "limits": {"max_total_trials": 20, "max_concurrent_trials": 2, "timeout_seconds": 1800},
    "early_termination": {"type": "median_stopping", "evaluation_interval": 1, "delay_evaluation": 2},
    "seed": 0,
    "register_best_model_as": "iris-logreg-best",
}


def test_deployment_parameters_validate_like_a_deployment_run():
    """What `prefect deployment run` / the UI sends: JSON parameters, checked by the flow's schema."""
    from prefect.utilities.callables import parameter_schema

    from prefect_mltrain.flows import sweep

    schema = parameter_schema(sweep.fn)
    assert {"trial", "search_space", "objective", "limits", "early_termination"} <= set(schema.properties)
    validated = sweep.validate_parameters(DEPLOYMENT_PARAMETERS)
    plan = check_sweep(
        validated["trial"],
        validated["search_space"],
        validated["objective"],
        validated["sampling_algorithm"],
        validated["limits"],
        validated["early_termination"],
        validated["seed"],
        validated["name"],
        validated["register_best_model_as"],
    )
    assert plan.spec.model_artifact == "model" and plan.objective.primary_metric == "accuracy"
    assert plan.limits.max_concurrent_trials == 2 and plan.policy is not None and plan.policy.type == "median_stopping"
    assert plan.name == "iris-logreg" and plan.space.to_dict()["fit_intercept"]["values"] == [True, False]
