"""The interface every trial implements: `TrialSpec`, the `TrialContext` it runs with, `TrialStopped`.

A `TrialSpec` gets the trial's hyperparameters and a `TrialContext`, trains, reports
intermediate values with `context.report(...)` (where the early-termination policy may stop
it) and returns its final metrics. The built-in kinds live in `trial_function`, `trial_sklearn`,
`trial_command` and `trial_pytorch`; `sweep.trial` gathers them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from prefect_mltrain.sweep.space import SearchSpace


class TrialStopped(Exception):
    """Raised by `TrialContext.report` when the trial must stop; carries the reason."""

    def __init__(self, reason: str, step: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


class TrialContext:
    """What a running trial can see and do: its number, params, MLflow run, GPUs, and `report`."""

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        primary_metric: str,
        mlflow_run_id: str | None = None,
        mlflow_env: dict[str, str] | None = None,
        gpu_ids: list[str] | None = None,
        on_report: Callable[[dict[str, float], int], None] | None = None,
        on_observe: Callable[[dict[str, float], int], None] | None = None,
    ) -> None:
        self.number = number
        self.params = params
        self.primary_metric = primary_metric
        self.mlflow_run_id = mlflow_run_id
        self.mlflow_env = dict(mlflow_env or {})
        self.gpu_ids = list(gpu_ids or [])
        self._on_report = on_report
        self._on_observe = on_observe or on_report
        self._step = 0
        self.reported: dict[str, float] = {}

    def report(self, metrics: Mapping[str, float] | float, step: int | None = None) -> None:
        """Report intermediate metrics of this trial at `step` (1, 2, ... when not given).

        A bare number is the primary metric. The values are logged to the trial's MLflow run
        and, when they include the primary metric, given to the early-termination policy.

        Raises:
            TrialStopped: The policy (or the sweep's timeout) stopped the trial. Let it
                propagate: the trial then ends in the `Pruned` state with the reason.
        """
        values = (
            {self.primary_metric: float(metrics)}
            if isinstance(metrics, (int, float))
            else {str(k): float(v) for k, v in metrics.items()}
        )
        self._step = int(step) if step is not None else self._step + 1
        self.reported.update(values)
        if self._on_report is not None:
            self._on_report(values, self._step)

    def observe(self, metrics: Mapping[str, float], step: int) -> None:
        """Like `report`, for values the trial's own code already logged to its MLflow run.

        They go to the early-termination policy only: logging them again would add a second
        point per step to the run's metric history (a command trial's script logs its own).
        """
        values = {str(k): float(v) for k, v in metrics.items()}
        self._step = int(step)
        self.reported.update(values)
        if self._on_observe is not None:
            self._on_observe(values, self._step)


class TrialSpec(ABC):
    """One trial's training. Subclasses are plain, picklable stores of their configuration."""

    type: ClassVar[str]
    #: Artifact path in the trial's MLflow run that holds the model (for registering the best).
    model_artifact: str | None = None
    framework: str = "unknown"
    #: The trial's own code logs its metrics to its MLflow run (the sweep must not log them again).
    logs_own_metrics: ClassVar[bool] = False

    def check(self, space: SearchSpace) -> None:
        """Raise `ConfigurationError` when the trial cannot use `space` (before compute starts)."""

    def with_blocks(self, resolve: Callable[[str, Any], Any]) -> TrialSpec:
        """This trial with every saved-block reference loaded: `resolve(field, value)` loads one.

        The sweep flow calls it before `check`, so trials on the workers hold the blocks
        themselves and this package's concept layers never load blocks.
        """
        return self

    def for_workers(self, tracker: Any, run_id: str, remote: bool) -> TrialSpec:
        """This trial as it travels to the workers, which share no files with the flow.

        The sweep flow calls it once the sweep's MLflow parent run `run_id` exists: a trial
        that needs files of the flow's machine (a command trial's source directory) packs them
        here, and uploads them to that run when `remote` workers (not on this machine) run it.
        """
        return self

    @abstractmethod
    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        """Train with `params`; return the final metrics."""

    def describe(self) -> str:
        """One line that says what the trial runs."""
        return self.type
