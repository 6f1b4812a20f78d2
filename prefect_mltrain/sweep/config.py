"""The sweep's objective and limits, checked together before any compute starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prefect_mltrain.errors import ConfigurationError

GOALS = ("maximize", "minimize")


@dataclass
class Objective:
    """The metric the sweep optimizes (`primary_metric`, as the trial reports it) and its `goal`."""

    primary_metric: str
    goal: str = "maximize"

    def check(self) -> None:
        """Raise `ConfigurationError` for an empty metric name or an unknown goal."""
        if not isinstance(self.primary_metric, str) or not self.primary_metric.strip():
            raise ConfigurationError(
                f"`primary_metric` must name a metric the trial reports, e.g. 'accuracy', but got "
                f"primary_metric={self.primary_metric!r}."
            )
        if not isinstance(self.goal, str) or self.goal.lower() not in GOALS:
            raise ConfigurationError(f"`goal` must be one of {list(GOALS)}, but got goal={self.goal!r}.")
        self.goal = self.goal.lower()

    @property
    def maximize(self) -> bool:
        """Whether larger values are better."""
        return self.goal == "maximize"

    def better(self, a: float, b: float | None) -> bool:
        """Whether `a` beats `b` (anything beats None)."""
        return b is None or (a > b if self.maximize else a < b)

    def reached(self, value: float, goal_value: float | None) -> bool:
        """Whether `value` reaches `goal_value`."""
        if goal_value is None:
            return False
        return value >= goal_value if self.maximize else value <= goal_value


@dataclass
class Limits:
    """How much the sweep may run (Azure's `limits`), plus an optional goal value to stop at.

    Attributes:
        max_total_trials: Trials in the whole sweep, resumed runs included.
        max_concurrent_trials: Trials running at once; held by a Prefect global concurrency
            limit, so it holds for trials wherever they run.
        timeout_seconds: Stop starting trials after this many seconds (running ones are told
            to stop at their next report).
        trial_timeout_seconds: A trial running longer than this fails (the trial flow's timeout).
        goal_value: Stop starting trials once the best value reaches this.
        trial_retries: Retries of a failed trial (Prefect flow retries of the trial flow).
        max_lost_trial_retries: How many times a trial lost with its worker or process (a Dask
            worker killed, out of memory) runs again, as a new trial with the same parameters
            recorded as a retry of it (`retry_of`), like Ray Tune's `max_failures`. A trial lost
            once more than this is not run again: the sweep ends Failed naming it, and a rerun
            of the sweep (same `name`) runs it. 0 never runs a lost trial again.
    """

    max_total_trials: int = 10
    max_concurrent_trials: int = 2
    timeout_seconds: float | None = None
    trial_timeout_seconds: float | None = None
    goal_value: float | None = None
    trial_retries: int = 0
    max_lost_trial_retries: int = 2

    def check(self) -> None:
        """Raise `ConfigurationError` for negative, zero or inconsistent limits."""
        for name in ("max_total_trials", "max_concurrent_trials"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigurationError(f"`{name}` must be an integer >= 1, but got {name}={v!r}.")
        if self.max_concurrent_trials > self.max_total_trials:
            raise ConfigurationError(
                f"`max_concurrent_trials` <= `max_total_trials` must hold, but got "
                f"max_concurrent_trials={self.max_concurrent_trials}, max_total_trials="
                f"{self.max_total_trials}. Fix: lower max_concurrent_trials to "
                f"{self.max_total_trials} or raise max_total_trials."
            )
        for name in ("timeout_seconds", "trial_timeout_seconds"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isinf(v)):
                raise ConfigurationError(
                    f"`{name}` must be a positive number of seconds or None (no limit), but got {name}={v!r}."
                )
        v = self.trial_retries
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigurationError(f"`trial_retries` must be an integer >= 0, but got trial_retries={v!r}.")
        v = self.max_lost_trial_retries
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigurationError(
                f"`max_lost_trial_retries` must be an integer >= 0 (how many times a trial lost with its "
                f"worker runs again), but got max_lost_trial_retries={v!r}. Fix: pass a whole number such "
                f"as 2 (the default), or 0 to never run a lost trial again."
            )
        g = self.goal_value
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g)):
            raise ConfigurationError(f"`goal_value` must be a finite number or None, but got goal_value={g!r}.")


def as_dataclass(cls: type[Any], value: Any, name: str) -> Any:
    """`value` as `cls`: an instance, a dict of its fields (for deployments), or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError:
            fields = sorted(cls.__dataclass_fields__)
            raise ConfigurationError(
                f"`{name}` takes {fields}, but got {sorted(value)}. Fix: use those names."
            ) from None
    raise ConfigurationError(f"`{name}` must be a {cls.__name__} or a dict, but got {value!r}.")
