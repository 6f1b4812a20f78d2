"""A sweep's trials on Dask: slots that ask the study for configurations and run each as a flow run.

`run_trials` (in the sweep's flow run) puts one ticket per trial to run in a Dask queue and
submits one slot task per concurrent trial. A slot (`trial_slot`, on its Dask worker) holds one
slot of the sweep's Prefect concurrency limit and its GPUs and, ticket by ticket, asks the study
for a configuration and runs it as a `sweep-trial` flow run, created as a subflow of the sweep
(`TrialRuns`). Asking on the worker saves a round trip through the flow per trial; every trial
is still its own flow run. The trial (`sweep.trial_run.run_trial`) tells the study its result
and returns its outcome, which the slot reads back from the trial flow run's final state.

The Prefect task and flow (`trial-slot`, `sweep-trial`) are defined in `flows/sweep.py`, the
layer that knows Prefect flows and tasks; it passes them in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prefect_mltrain._compat import heartbeats
from prefect_mltrain._compat.optuna import trial_id as storage_id
from prefect_mltrain._compat.prefect_engine import create_flow, create_flow_run, run_created_flow_run
from prefect_mltrain.compute.devices import cuda_env, devices_needed, visible_gpu_count, worker_allocator
from prefect_mltrain.errors import MetricNotReportedError
from prefect_mltrain.sweep.config import Objective
from prefect_mltrain.sweep.journal import import_optuna
from prefect_mltrain.sweep.sampling import SamplingAlgorithm
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.study import finished_trials, load_study, pruner
from prefect_mltrain.sweep.termination import TerminationPolicy
from prefect_mltrain.sweep.trial import TrialSpec

if TYPE_CHECKING:
    from prefect_mltrain.blocks.tracking import MlflowTracking

# The study of each (journal, sweep, slot), loaded once per worker process: a slot's sampler
# keeps its own state (a seed offset by the slot), and loading costs a journal replay.
_studies: dict[tuple[str, str, int], Any] = {}
_studies_lock = threading.Lock()


# ----------------------------------------------------------------------------- a slot's plan


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
    """What every trial runs, the metric it is judged by, and its flow run's timeout and retries."""

    spec: TrialSpec
    objective: Objective
    timeout_seconds: float | None = None
    retries: int = 0


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


# ----------------------------------------------------------------------------- one slot (on its worker)


@dataclass
class TrialRuns:
    """Creates the trial flow runs of one slot as subflows of the sweep, in one API call each.

    Calling the trial flow inside the slot task would make Prefect create a placeholder task
    run in the sweep, look for an existing subflow run and rename the new one: four API calls
    before the trial starts. Here the flow run is created directly, named and tagged, with the
    slot's task run (a task of the sweep flow run) as its parent, so the UI shows every trial
    under the sweep all the same; the engine then runs that flow run.
    """

    client: Any
    flow: Any
    parent_task_run_id: Any
    tags: list[str]
    flow_id: Any = None

    def create(self, name: str, parameters: dict[str, Any]) -> Any:
        if self.flow_id is None:
            self.flow_id = create_flow(self.client, self.flow.name)
        return create_flow_run(
            self.client, self.flow, self.flow_id, name, parameters, self.tags, self.parent_task_run_id
        )


def trial_slot(plan: SlotPlan, trial_flow: Any) -> list[dict[str, Any]]:
    """Run trials one after another in one concurrency slot, until the sweep's tickets run out.

    The body of the `trial-slot` task: it holds one slot of the sweep's Prefect global
    concurrency limit and its GPUs (`CUDA_VISIBLE_DEVICES`), and runs each trial as a flow run
    of `trial_flow` without flow-run heartbeats (`heartbeats.off`: a trial's state changes show
    it is alive). Returns the outcome of every trial it ran.
    """
    import distributed
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.context import TaskRunContext

    client = distributed.get_client()
    tickets = distributed.Queue(plan.control.tickets, client=client)
    stop = distributed.Variable(plan.control.stop_variable, client=client)
    allocator = worker_allocator(os.environ, visible_gpu_count())
    gpu_ids = allocator.acquire(devices_needed(plan.gpus_per_trial))
    saved = {k: os.environ.get(k) for k in cuda_env(gpu_ids)}
    study = None  # loaded with the first ticket: a slot that gets none leaves at once, even on a cold worker
    outcomes: list[dict[str, Any]] = []
    try:
        os.environ.update(cuda_env(gpu_ids))
        with (
            concurrency(plan.control.concurrency_limit, occupy=1),
            heartbeats.off(),
            get_client(sync_client=True) as prefect_client,
        ):
            task_run = TaskRunContext.get()
            runs = TrialRuns(
                prefect_client,
                trial_flow,
                task_run.task_run.id if task_run else None,
                sorted({*(task_run.task_run.tags if task_run else ()), f"sweep:{plan.study.name}"}),
            )
            while _take_ticket(plan.control, tickets, stop):
                if study is None:
                    study = plan.study.load(plan.slot)
                outcome = _run_one(plan, study, runs, gpu_ids)
                outcomes.append(outcome)
                reason = _stops_the_sweep(plan, outcome)
                if reason:
                    stop.set(reason)
                    break
    finally:
        allocator.release(gpu_ids)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return outcomes


def _take_ticket(control: SlotControl, tickets: Any, stop: Any) -> bool:
    """Take the next trial's ticket; False when none is left, the sweep was told to stop or its deadline passed."""
    if control.deadline is not None and time.time() >= control.deadline:
        return False
    if stop.get(timeout=5) is not None:
        return False
    try:
        # qsize first: an empty queue's `get` times out with an error in the scheduler log.
        if tickets.qsize() == 0:
            return False
        tickets.get(timeout=1)
    except (TimeoutError, asyncio.TimeoutError):
        return False
    return True


def _stops_the_sweep(plan: SlotPlan, outcome: dict[str, Any]) -> str | None:
    """Why the whole sweep stops after `outcome`: a missing primary metric, or the goal value reached."""
    if outcome.get("error") == "metric_not_reported":
        return str(outcome["message"])
    goal_value = plan.control.goal_value
    if outcome["state"] == "COMPLETE" and plan.trial.objective.reached(outcome["value"], goal_value):
        return f"goal_value {goal_value} reached by trial {outcome['number']}"
    return None


def _run_one(plan: SlotPlan, study: Any, runs: TrialRuns, gpu_ids: list[str]) -> dict[str, Any]:
    """Ask the study for a configuration, run it as a `sweep-trial` flow run, return the outcome."""
    optuna = import_optuna()
    space, sweep = plan.study.space, plan.study.name
    asked = study.ask(space.internal())
    values = space.values(asked.params)
    asked.set_user_attr("params", values)
    flow_run = runs.create(f"{sweep}-trial-{asked.number}", {"sweep": sweep, "number": asked.number, "params": values})
    parameters = dict(
        sweep=sweep, number=asked.number, params=values, plan=plan, trial_id=storage_id(asked), gpu_ids=gpu_ids
    )
    state = run_created_flow_run(runs.flow, flow_run, parameters)
    outcome = outcome_of(state)
    if outcome is None or (state.is_failed() or state.is_crashed()) and outcome.get("state") != "FAIL":
        study.tell(asked.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        outcome = {
            "number": asked.number,
            "state": "FAIL",
            "message": state.message or state.name,
            **({k: outcome[k] for k in ("mlflow_run_id", "flow_run_id")} if outcome else {}),
        }
    outcome["flow_state"] = state.name
    return outcome


def outcome_of(state: Any) -> dict[str, Any] | None:
    """The outcome a trial flow run returned as its final state's data; None when it failed with an exception."""
    try:
        data = state.result(raise_on_failure=False)
    except Exception:  # no data attached to the state
        return None
    return dict(data) if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- the slots (in the sweep's flow run)


@dataclass(frozen=True)
class TrialsRun:
    """What the slots did: every trial's outcome, the reason a slot stopped the sweep, and whether time ran out."""

    outcomes: list[dict[str, Any]]
    stop_reason: str | None = None
    timed_out: bool = False


@dataclass
class Progress:
    """The sweep's progress (trials finished of its capacity), passed to `update` as a percentage."""

    update: Callable[[float], Any]
    done_before: int
    capacity: int
    shown: int = -1

    def show(self, finished: int, force: bool = False) -> None:
        """Show `finished` trials of this run done; skip the write when the count did not change."""
        if force or finished != self.shown:
            self.update(100.0 * (self.done_before + finished) / max(self.capacity, 1))
            self.shown = finished


def run_trials(
    task_runner: Any,
    slot_task: Any,
    plan: SlotPlan,
    slots: int,
    to_run: int,
    resources: dict[str, Any] | None,
    study: Any,
    progress: Progress,
) -> TrialsRun:
    """Run `to_run` trials in `slots` slot tasks on the Dask `task_runner`; return what they did.

    `plan` is every slot's plan but for its number and the queue names, set here. Each slot task
    is submitted with the Dask `resources` annotation (the trial's GPUs). `progress` is shown
    every 2 s from the study.

    Raises:
        MetricNotReportedError: A trial finished without the primary metric (the sweep stopped).
    """
    if not slots:
        progress.show(0, force=True)
        return TrialsRun([])
    import distributed

    dask_client = task_runner.client
    token = uuid.uuid4().hex[:12]
    tickets = distributed.Queue(f"mltrain-{plan.study.name}-{token}-tickets", client=dask_client)
    stop = distributed.Variable(f"mltrain-{plan.study.name}-{token}-stop", client=dask_client)
    stop.set(None)
    for i in range(to_run):
        tickets.put(i)
    control = replace(plan.control, tickets=tickets.name, stop_variable=stop.name)
    plans = [replace(plan, control=control, slot=slot) for slot in range(slots)]

    def on_wait() -> None:
        progress.show(len(finished_trials(study)) - progress.done_before)

    outcomes = run_slots(task_runner, slot_task, plans, resources, on_wait)
    progress.show(len(outcomes), force=True)
    for outcome in outcomes:
        if outcome.get("error") == "metric_not_reported":
            raise MetricNotReportedError(outcome["message"])
    reason = stop.get(timeout=5)
    deadline = control.deadline
    timed_out = not reason and deadline is not None and time.time() >= deadline and len(outcomes) < to_run
    try:
        stop.delete()
        tickets.close()
    except Exception:  # cleaning up scheduler state is best effort
        pass
    return TrialsRun(outcomes, reason or None, timed_out)


def run_slots(
    task_runner: Any,
    slot_task: Any,
    plans: list[SlotPlan],
    resources: dict[str, Any] | None,
    on_wait: Callable[[], None],
) -> list[dict[str, Any]]:
    """Submit one `slot_task` per plan, wait for all (calling `on_wait` every 2 s), return every outcome."""
    import dask
    import distributed

    futures = []
    for plan in plans:
        with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
            futures.append(task_runner.submit(slot_task, parameters={"plan": plan}))
    while True:  # wake when the slots end, and every 2 s to show progress (not an API write per trial)
        try:
            with task_runner.client.as_current():
                distributed.wait([f.wrapped_future for f in futures], timeout=2)
            break
        except TimeoutError:
            on_wait()
    return [o for f in futures for o in f.result()]
