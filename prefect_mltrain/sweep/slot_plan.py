"""A slot's plan: the small, frozen configs a `trial-slot` task gets (pickled to its Dask worker).

`SlotPlan` is built from `StudyRef` (which study and how to open it), `TrialSettings` (what a
trial runs, its timeout and retries), `TrialTracking` (the experiment and parent run) and
`SlotControl` (what the slots share: the concurrency limit, ticket queue, stop flag, deadline
and goal). The sweep flow builds one (`flows/sweep.py`); `sweep.runner` gives each slot its copy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect_mltrain.sweep.config import Limits, Objective
from prefect_mltrain.sweep.sampling import SamplingAlgorithm
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.study import load_study, pruner
from prefect_mltrain.sweep.termination import TerminationPolicy
from prefect_mltrain.sweep.trial import TrialSpec

if TYPE_CHECKING:
    from prefect_mltrain.blocks.tracking import MlflowTracking

# The study of each (journal, sweep, slot), loaded once per worker process: a slot's sampler
# keeps its own state (a seed offset by the slot), and loading costs a journal replay.
_studies: dict[tuple[str, str, int], Any] = {}
_studies_lock = threading.Lock()


@dataclass(frozen=True)
class StudyRef:
    """How a slot finds the sweep's study and opens it: its name and journal, its sampler's and pruner's parts."""

    name: str
    path: str
    space: SearchSpace
    algorithm: Any
    policy: TerminationPolicy | None

    def load(self, slot: int) -> Any:
        """The study with `slot`'s sampler and the policy's pruner, loaded once per process and slot."""
        key = (self.path, self.name, slot)
        with _studies_lock:
            study = _studies.get(key)
            if study is None:
                algorithm = self.algorithm
                sampler = algorithm.sampler(self.space, slot) if isinstance(algorithm, SamplingAlgorithm) else algorithm
                study = load_study(self.name, self.path, sampler, pruner(self.policy))
                _studies[key] = study
            return study


@dataclass(frozen=True)
class TrialSettings:
    """What every trial runs, the metric it is judged by, its flow run's timeout and retries, and how
    often a trial lost with its worker runs again (`Limits.max_lost_trial_retries`)."""

    spec: TrialSpec
    objective: Objective
    timeout_seconds: float | None = None
    retries: int = 0
    max_lost_trial_retries: int = Limits.max_lost_trial_retries  # the same default


@dataclass(frozen=True)
class TrialTracking:
    """Where the trials log: the tracking block, the experiment and the sweep's MLflow parent run."""

    tracking: MlflowTracking
    experiment_id: str
    parent_run_id: str


@dataclass(frozen=True)
class SlotControl:
    """What the slots share: the concurrency limit, the Dask ticket queue and stop flag, the deadline, the goal."""

    concurrency_limit: str
    deadline: float | None = None
    goal_value: float | None = None
    tickets: str = ""
    stop_variable: str = ""
    events: str = ""
    beat_variable: str = ""


@dataclass(frozen=True)
class SlotPlan:
    """One concurrent-trial slot's work order (pickled to its Dask worker with the slot task).

    A slot holds one slot of the sweep's concurrency limit and runs trials one after another:
    it takes a ticket from the sweep's queue, asks the study for a configuration, runs the
    trial flow and reads its outcome, until the tickets run out or the sweep must stop.
    """

    study: StudyRef
    trial: TrialSettings
    tracking: TrialTracking
    control: SlotControl
    gpus_per_trial: float = 0.0
    slot: int = 0
