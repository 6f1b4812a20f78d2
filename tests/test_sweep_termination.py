"""Early-termination policies: Azure semantics as pure decisions, and validation."""

from __future__ import annotations

import pytest

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.termination import (
    POLICIES,
    AshaPolicy,
    BanditPolicy,
    HyperbandPolicy,
    MedianStoppingPolicy,
    TruncationSelectionPolicy,
    termination_policy,
)

pytestmark = pytest.mark.unit


def test_bandit_slack_factor_follows_azure_example():
    # Azure: best 0.8 with slack_factor 0.2 -> anything below 0.8/1.2 = 0.667 stops (maximize).
    policy = BanditPolicy(slack_factor=0.2)
    others = [[(1, 0.8)]]
    assert policy.decide(0.66, 1, others, True, [(1, 0.66)]) is not None
    assert policy.decide(0.70, 1, others, True, [(1, 0.70)]) is None
    reason = policy.decide(0.66, 1, others, True, [(1, 0.66)])
    assert "slack_factor=0.2" in reason and "0.8" in reason


def test_bandit_slack_amount_minimize():
    policy = BanditPolicy(slack_amount=0.1)
    assert policy.decide(0.45, 2, [[(2, 0.3)]], False, [(2, 0.45)]) is not None
    assert policy.decide(0.35, 2, [[(2, 0.3)]], False, [(2, 0.35)]) is None
    assert policy.decide(0.9, 2, [[(1, 0.3)]], False, [(2, 0.9)]) is None  # nobody else at step 2


def test_interval_and_delay():
    policy = BanditPolicy(slack_factor=0.1, evaluation_interval=2, delay_evaluation=3)
    assert [s for s in range(1, 9) if policy.due(s)] == [4, 6, 8]


def test_median_stopping_uses_running_averages():
    policy = MedianStoppingPolicy()
    others = [[(1, 0.5), (2, 0.7)], [(1, 0.6), (2, 0.8)], [(1, 0.1), (2, 0.2)]]
    # averages at step 2: 0.6, 0.7, 0.15 -> median 0.6
    assert policy.decide(0.5, 2, others, True, [(1, 0.4), (2, 0.5)]) is not None
    assert policy.decide(0.65, 2, others, True, [(1, 0.4), (2, 0.65)]) is None


def test_truncation_selection_cuts_the_worst_percentage():
    policy = TruncationSelectionPolicy(truncation_percentage=25)
    others = [[(1, v)] for v in (0.9, 0.8, 0.7)]
    assert policy.decide(0.1, 1, others, True, [(1, 0.1)]) is not None  # worst of 4 -> 25% cut
    assert policy.decide(0.75, 1, others, True, [(1, 0.75)]) is None


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"type": "bandit"}, ["exactly one of `slack_factor`", "slack_factor=None"]),
        ({"type": "bandit", "slack_factor": 0.1, "slack_amount": 0.1}, ["exactly one"]),
        ({"type": "bandit", "slack_factor": -1}, ["slack_factor=-1"]),
        ({"type": "bandit", "slack_factor": 0.1, "evaluation_interval": 0}, ["evaluation_interval=0"]),
        ({"type": "median_stopping", "delay_evaluation": -1}, ["delay_evaluation=-1"]),
        ({"type": "truncation_selection", "truncation_percentage": 0}, ["[1, 99]", "truncation_percentage=0"]),
        ({"type": "asha", "reduction_factor": 1}, ["reduction_factor=1"]),
        ({"type": "hyperband", "min_resource": 3, "max_resource": 2}, ["max_resource=2"]),
        ({"type": "bandit", "slack": 0.1}, ["takes", "slack_factor"]),
        ({"type": "early_stop"}, ["'early_stop'", str(sorted(POLICIES))]),
    ],
)
def test_bad_policies_name_rule_and_value(spec, words):
    with pytest.raises(ConfigurationError) as info:
        termination_policy(spec)
    for word in words:
        assert word in str(info.value)


def test_policies_build_optuna_pruners():
    import optuna

    for policy in (
        BanditPolicy(slack_factor=0.1),
        MedianStoppingPolicy(),
        TruncationSelectionPolicy(),
        AshaPolicy(),
        HyperbandPolicy(),
    ):
        policy.check()
        assert isinstance(policy.pruner(), optuna.pruners.BasePruner)
        assert termination_policy(policy.to_dict()).to_dict() == policy.to_dict()


def test_bandit_pruner_acts_in_an_optuna_study():
    import optuna

    study = optuna.create_study(direction="maximize", pruner=BanditPolicy(slack_amount=0.1).pruner())
    good = study.ask()
    good.report(0.9, 1)
    assert not good.should_prune()
    bad = study.ask()
    bad.report(0.5, 1)
    assert bad.should_prune()
    assert "outside slack_amount=0.1" in BanditPolicy(slack_amount=0.1).explain(study, bad.number, 1, 0.5)
