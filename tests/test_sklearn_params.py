"""Estimator parameter values are checked by scikit-learn's own rules before anything is fitted."""

import pytest

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.estimators.sklearn import make_estimator
from prefect_mltrain.sweep import SklearnTrial, choice, uniform
from prefect_mltrain.sweep.space import SearchSpace

pytestmark = pytest.mark.unit


def test_every_bad_value_is_named_with_the_rule_and_the_fix():
    with pytest.raises(ConfigurationError) as caught:
        make_estimator(
            "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 0, "max_depth": 3, "criterion": "gin"}
        )
    assert str(caught.value).splitlines() == [
        "`params['n_estimators']`=0: The 'n_estimators' parameter of RandomForestClassifier must be an int in the "
        "range [1, inf). Got 0 instead. Fix: give `n_estimators` a value that rule allows, or leave it out for the "
        "default (100).",
        "`params['criterion']`='gin': The 'criterion' parameter of RandomForestClassifier must be a str among "
        + str(caught.value).split("must be a str among ", 1)[1].split(". Got")[0]
        + ". Got 'gin' instead. Fix: give `criterion` a value that rule allows, or leave it out for the default "
        "('gini').",
    ]


def test_good_values_pass_and_are_set():
    assert make_estimator("sklearn.ensemble.BaggingClassifier", {"n_estimators": 3}).n_estimators == 3
    assert make_estimator("sklearn.neural_network.MLPClassifier", {"hidden_layer_sizes": [8, 4]}).hidden_layer_sizes


def test_sklearn_trial_checks_its_fixed_params_and_every_choice():
    space = SearchSpace.parse({"kernel": choice(["rbf", "linr"]), "C": choice([0, 1.0]), "gamma": uniform(0.1, 1)})
    with pytest.raises(ConfigurationError, match=r"`params\['max_iter'\]`=-5: The 'max_iter' parameter of SVC"):
        SklearnTrial(estimator="sklearn.svm.SVC", params={"max_iter": -5}).check(space)
    with pytest.raises(ConfigurationError) as caught:
        SklearnTrial(estimator="sklearn.svm.SVC").check(space)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("`search_space['kernel']` offers 'linr': The 'kernel' parameter of SVC must be")
    assert lines[0].endswith("Got 'linr' instead. Fix: drop 'linr' from its `values`.")
    assert lines[1] == (
        "`search_space['C']` offers 0: The 'C' parameter of SVC must be a float in the range (0.0, inf]. Got 0 "
        "instead. Fix: drop 0 from its `values`."
    )
