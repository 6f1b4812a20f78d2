"""A sweep's arguments checked together, before any compute starts: the `SweepPlan`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.config import Limits, Objective, as_dataclass
from prefect_mltrain.sweep.sampling import SamplingAlgorithm, sampling_algorithm
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.termination import TerminationPolicy, termination_policy
from prefect_mltrain.sweep.trial import TrialSpec, trial_spec

_SWEEP_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's arguments, checked together (`plan_sweep`)."""

    spec: TrialSpec
    space: SearchSpace
    objective: Objective
    algorithm: Any
    limits: Limits
    policy: TerminationPolicy | None
    name: str

    def capacity(self) -> int:
        """Trials the whole sweep runs at most: `max_total_trials`, or fewer for a smaller grid."""
        capacity = self.limits.max_total_trials
        if isinstance(self.algorithm, SamplingAlgorithm):
            capacity = int(min(capacity, self.algorithm.size(self.space)))
        return capacity


def plan_sweep(
    trial: Any,
    search_space: Any,
    objective: Any,
    sampling_algorithm_: Any,
    limits: Any,
    early_termination: Any,
    seed: int | None,
    name: str | None,
    load_block: Callable[[str, Any], Any],
) -> SweepPlan:
    """Check a sweep's arguments together; raise `ConfigurationError` on the first problem.

    `load_block(field, value)` loads a saved block a trial refers to (`TrialSpec.with_blocks`).
    """
    goal = as_dataclass(Objective, objective, "objective") if objective is not None else None
    if goal is None:
        raise ConfigurationError(
            "`objective` is required: the metric to optimize and its goal, e.g. "
            "Objective(primary_metric='accuracy', goal='maximize')."
        )
    goal.check()
    space = SearchSpace.parse(search_space)
    algorithm = sampling_algorithm(sampling_algorithm_, seed)
    if isinstance(algorithm, SamplingAlgorithm):
        algorithm.check(space)
    policy = termination_policy(early_termination)
    if (
        policy is not None
        and isinstance(algorithm, SamplingAlgorithm)
        and algorithm.adaptive
        and policy.type in ("bandit", "median_stopping", "truncation_selection")
    ):
        raise ConfigurationError(
            f"`early_termination`={policy.type!r} cannot act with `sampling_algorithm`='bayesian': as in "
            f"Azure ML, bayesian sampling learns from finished trials only, and trials stopped by "
            f"{policy.type} would be fed to it as results of configurations that never finished. "
            f"Fix: use 'random' or 'sobol' with {policy.type}, drop `early_termination`, or use "
            f"'asha'/'hyperband', which Optuna's TPE sampler is built to work with."
        )
    lim = as_dataclass(Limits, limits, "limits")
    lim.check()
    spec = trial_spec(trial).with_blocks(load_block)
    spec.check(space)
    return SweepPlan(spec, space, goal, algorithm, lim, policy, _checked_name(name))


def _checked_name(name: str | None) -> str:
    if name is None:
        name = f"sweep-{int(time.time())}"
    if not isinstance(name, str) or not _SWEEP_NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "my-sweep"
        raise ConfigurationError(
            f"`name`={name!r} must be lowercase letters and digits joined by single dashes (it names "
            f"the study, the concurrency limit and the runs). Fix: use {suggestion!r}."
        )
    return name


def check_registrable(spec: TrialSpec, register_best_model_as: str) -> None:
    """Raise `ConfigurationError` when the best trial's model cannot be registered: the trial logs none."""
    if not spec.model_artifact:
        raise ConfigurationError(
            f"`register_best_model_as`={register_best_model_as!r} needs trials that log a model, but "
            f"this {spec.type} trial logs none. Fix: SklearnTrial(log_model=True), "
            f"CommandTrial(model_path='outputs/...'), or FunctionTrial(fn, model_artifact='model')."
        )
