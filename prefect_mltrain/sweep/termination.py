"""Early termination policies with Azure ML's names and semantics, plus ASHA and Hyperband.

A policy decides *when* to stop a trial that reports intermediate values of the primary
metric. Each policy is a small object; `pruner()` turns it into an Optuna pruner, so the
decision runs where the trial reports (on the Dask worker) against the shared study storage.

Azure's policies are evaluated at a trial's reported step `n` when `n >= delay_evaluation`
and `n % evaluation_interval == 0`:

- `bandit`: stop when the value is not within `slack_factor` (ratio) or `slack_amount`
  (absolute) of the best value any trial reported at that step. Maximizing with
  slack_factor=0.2 and a best of 0.8, a trial below 0.8 / 1.2 = 0.667 stops.
- `median_stopping`: stop when the trial's best value so far is worse than the median of
  the other trials' running averages up to that step.
- `truncation_selection`: stop when the trial is among the worst `truncation_percentage`
  percent of the trials that reported that step.

`asha` and `hyperband` are Optuna's SuccessiveHalvingPruner and HyperbandPruner.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.journal import import_optuna


def _check_int(policy: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{policy}: `{name}` must be an integer >= {minimum}, but got {name}={value!r}.")


@dataclass
class TerminationPolicy(ABC):
    """Decides when to stop a trial from its intermediate values."""

    type: ClassVar[str]

    def check(self) -> None:
        """Raise `ConfigurationError` for invalid fields."""

    @abstractmethod
    def pruner(self) -> Any:
        """The Optuna pruner that applies this policy."""

    def explain(self, study: Any, trial_number: int, step: int, value: float) -> str:
        """A human-readable reason for stopping `trial_number` at `step`."""
        return f"{self.type} stopped the trial at step {step} (value {value:.6g})."

    def to_dict(self) -> dict[str, Any]:
        """The policy as a JSON-able dict."""
        return {"type": self.type, **asdict(self)}


@dataclass
class _IntervalPolicy(TerminationPolicy):
    evaluation_interval: int = 1
    delay_evaluation: int = 0

    def check(self) -> None:
        _check_int(self.type, "evaluation_interval", self.evaluation_interval, 1)
        _check_int(self.type, "delay_evaluation", self.delay_evaluation, 0)

    def due(self, step: int) -> bool:
        """Whether the policy is evaluated at `step`."""
        return step >= self.delay_evaluation and step % self.evaluation_interval == 0

    @abstractmethod
    def decide(
        self,
        value: float,
        step: int,
        others: list[list[tuple[int, float]]],
        maximize: bool,
        history: list[tuple[int, float]],
    ) -> str | None:
        """The reason to stop, or None to continue.

        Args:
            value: The trial's value at `step`.
            step: The step being evaluated.
            others: The other trials' (step, value) lists.
            maximize: Whether larger values are better.
            history: The trial's own (step, value) list up to `step`.
        """

    def _evaluate(self, study: Any, trial: Any) -> str | None:
        step = trial.last_step
        if step is None or not self.due(step):
            return None
        value = trial.intermediate_values[step]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        others = [
            sorted(t.intermediate_values.items())
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and t.intermediate_values
        ]
        maximize = study.direction.name == "MAXIMIZE"
        history = sorted((s, v) for s, v in trial.intermediate_values.items() if s <= step)
        return self.decide(value, step, others, maximize, history)

    def pruner(self) -> Any:
        optuna = import_optuna()
        policy = self

        class _Pruner(optuna.pruners.BasePruner):  # type: ignore[misc,name-defined]
            def prune(self, study: Any, trial: Any) -> bool:
                return policy._evaluate(study, trial) is not None

        return _Pruner()

    def explain(self, study: Any, trial_number: int, step: int, value: float) -> str:
        trial = study.trials[trial_number] if trial_number < len(study.trials) else None
        reason = self._evaluate(study, trial) if trial is not None else None
        return reason or super().explain(study, trial_number, step, value)


def _at(history: list[tuple[int, float]], step: int) -> float | None:
    for s, v in history:
        if s == step:
            return v
    return None


@dataclass
class BanditPolicy(_IntervalPolicy):
    """Stop trials whose value falls outside a slack of the best value at the same step."""

    slack_factor: float | None = None
    slack_amount: float | None = None
    type: ClassVar[str] = "bandit"

    def check(self) -> None:
        super().check()
        if (self.slack_factor is None) == (self.slack_amount is None):
            raise ConfigurationError(
                f"bandit: give exactly one of `slack_factor` (a ratio, e.g. 0.1) or `slack_amount` "
                f"(an absolute distance), but got slack_factor={self.slack_factor!r}, "
                f"slack_amount={self.slack_amount!r}."
            )
        for name in ("slack_factor", "slack_amount"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise ConfigurationError(f"bandit: `{name}` must be a number >= 0, but got {name}={v!r}.")

    def decide(
        self,
        value: float,
        step: int,
        others: list[list[tuple[int, float]]],
        maximize: bool,
        history: list[tuple[int, float]],
    ) -> str | None:
        at_step = [v for o in others if (v := _at(o, step)) is not None]
        if not at_step:
            return None
        best = max([*at_step, value]) if maximize else min([*at_step, value])
        if self.slack_factor is not None:
            bound = best / (1 + self.slack_factor) if maximize else best * (1 + self.slack_factor)
            slack = f"slack_factor={self.slack_factor}"
        else:
            amount = float(self.slack_amount or 0)
            bound = best - amount if maximize else best + amount
            slack = f"slack_amount={self.slack_amount}"
        if (value < bound) if maximize else (value > bound):
            return (
                f"bandit: value {value:.6g} at step {step} is outside {slack} of the best "
                f"value {best:.6g} (bound {bound:.6g})."
            )
        return None


@dataclass
class MedianStoppingPolicy(_IntervalPolicy):
    """Stop trials whose best value is worse than the median of the others' running averages."""

    type: ClassVar[str] = "median_stopping"

    def decide(
        self,
        value: float,
        step: int,
        others: list[list[tuple[int, float]]],
        maximize: bool,
        history: list[tuple[int, float]],
    ) -> str | None:
        averages = [statistics.fmean(v for s, v in o if s <= step) for o in others if any(s <= step for s, _ in o)]
        if not averages:
            return None
        median = statistics.median(averages)
        best = max(v for _, v in history) if maximize else min(v for _, v in history)
        if (best < median) if maximize else (best > median):
            return (
                f"median_stopping: best value {best:.6g} up to step {step} is worse than the "
                f"median {median:.6g} of {len(averages)} other trials' running averages."
            )
        return None


@dataclass
class TruncationSelectionPolicy(_IntervalPolicy):
    """Stop the worst `truncation_percentage` percent of trials at each evaluation."""

    truncation_percentage: int = 5
    type: ClassVar[str] = "truncation_selection"

    def check(self) -> None:
        super().check()
        p = self.truncation_percentage
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 99:
            raise ConfigurationError(
                f"truncation_selection: `truncation_percentage` must be an integer in [1, 99], "
                f"but got truncation_percentage={p!r}."
            )

    def decide(
        self,
        value: float,
        step: int,
        others: list[list[tuple[int, float]]],
        maximize: bool,
        history: list[tuple[int, float]],
    ) -> str | None:
        at_step = [v for o in others if (v := _at(o, step)) is not None]
        values = [*at_step, value]
        cut = math.floor(len(values) * self.truncation_percentage / 100)
        if cut == 0:
            return None
        worse_than_me = sum(1 for v in at_step if (v < value if maximize else v > value))
        rank_from_bottom = worse_than_me  # 0 = worst
        if rank_from_bottom < cut:
            return (
                f"truncation_selection: value {value:.6g} at step {step} is in the worst "
                f"{self.truncation_percentage}% of {len(values)} trials."
            )
        return None


@dataclass
class AshaPolicy(TerminationPolicy):
    """Asynchronous successive halving: keep the top 1/`reduction_factor` at each rung."""

    min_resource: int = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    type: ClassVar[str] = "asha"

    def check(self) -> None:
        _check_int(self.type, "min_resource", self.min_resource, 1)
        _check_int(self.type, "reduction_factor", self.reduction_factor, 2)
        _check_int(self.type, "min_early_stopping_rate", self.min_early_stopping_rate, 0)

    def pruner(self) -> Any:
        return import_optuna().pruners.SuccessiveHalvingPruner(
            min_resource=self.min_resource,
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.min_early_stopping_rate,
        )

    def explain(self, study: Any, trial_number: int, step: int, value: float) -> str:
        return (
            f"asha: value {value:.6g} at step {step} is not in the top 1/{self.reduction_factor} "
            f"of the trials at its rung."
        )


@dataclass
class HyperbandPolicy(TerminationPolicy):
    """Hyperband: several successive-halving brackets with different aggressiveness."""

    min_resource: int = 1
    max_resource: int = 9
    reduction_factor: int = 3
    type: ClassVar[str] = "hyperband"

    def check(self) -> None:
        _check_int(self.type, "min_resource", self.min_resource, 1)
        _check_int(
            self.type,
            "max_resource",
            self.max_resource,
            self.min_resource + 1 if isinstance(self.min_resource, int) else 2,
        )
        _check_int(self.type, "reduction_factor", self.reduction_factor, 2)

    def pruner(self) -> Any:
        return import_optuna().pruners.HyperbandPruner(
            min_resource=self.min_resource,
            max_resource=self.max_resource,
            reduction_factor=self.reduction_factor,
        )

    def explain(self, study: Any, trial_number: int, step: int, value: float) -> str:
        return (
            f"hyperband: value {value:.6g} at step {step} is not in the top "
            f"1/{self.reduction_factor} of its bracket's rung."
        )


POLICIES: dict[str, type[TerminationPolicy]] = {
    cls.type: cls
    for cls in (BanditPolicy, MedianStoppingPolicy, TruncationSelectionPolicy, AshaPolicy, HyperbandPolicy)
}


def termination_policy(value: TerminationPolicy | Mapping[str, Any] | None) -> TerminationPolicy | None:
    """Resolve `early_termination`: a policy, its dict form (`{"type": "bandit", ...}`), or None.

    Raises:
        ConfigurationError: Unknown type (the valid ones are listed) or invalid fields.
    """
    if value is None:
        return None
    if isinstance(value, TerminationPolicy):
        value.check()
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"`early_termination` must be a policy, a dict with a `type`, or None, but got {value!r}. "
            f"Fix: e.g. {{'type': 'bandit', 'slack_factor': 0.1}}."
        )
    kind = value.get("type")
    if kind not in POLICIES:
        raise ConfigurationError(f"`early_termination`: unknown policy type {kind!r}. Valid types: {sorted(POLICIES)}.")
    cls = POLICIES[kind]
    args = {k: v for k, v in value.items() if k != "type"}
    try:
        policy = cls(**args)
    except TypeError:
        fields = sorted(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        raise ConfigurationError(
            f"`early_termination`: {kind} takes {fields}, but got {sorted(args)}. Fix: use those names."
        ) from None
    policy.check()
    return policy
