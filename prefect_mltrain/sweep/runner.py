"""A sweep's trials on Dask: slots that ask the study for configurations and run each as a flow run.

`run_trials` (in the sweep's flow run) puts one ticket per trial to run in a Dask queue and
submits one slot task per concurrent trial. A slot (`trial_slot`, on its Dask worker) holds one
slot of the sweep's Prefect concurrency limit and its GPUs and, ticket by ticket, asks the study
for a configuration and runs it as a `sweep-trial` flow run, created as a subflow of the sweep
(`TrialRuns`). Asking on the worker saves a round trip through the flow per trial; every trial
is still its own flow run. The trial (`sweep.trial_run.run_trial`) tells the study its result
and returns its outcome, which the slot reads back from the trial flow run's final state.

Beside it: a slot's configs (`sweep.slot_plan`), its concurrency lease (`sweep.lease`), the
sweep's eye on its slots (`sweep.watch`), lost trials (`sweep.lost`) and what a killed run left
(`sweep.reconcile`).

The Prefect task and flow (`trial-slot`, `sweep-trial`) are defined in `flows/sweep.py`, the
layer that knows Prefect flows and tasks; it passes them in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prefect_mltrain._compat import heartbeats
from prefect_mltrain._compat.optuna import trial_id as storage_id
from prefect_mltrain._compat.prefect_engine import create_flow, create_flow_run, run_created_flow_run
from prefect_mltrain.compute.devices import cuda_env, devices_needed, visible_gpu_count, worker_allocator
from prefect_mltrain.errors import MetricNotReportedError
from prefect_mltrain.sweep.journal import import_optuna
from prefect_mltrain.sweep.lease import Lease
from prefect_mltrain.sweep.lost import finished_trials
from prefect_mltrain.sweep.slot_plan import SlotControl, SlotPlan
from prefect_mltrain.sweep.watch import Progress, Watch
from prefect_mltrain.tracking.orphans import with_owner_tags

# ----------------------------------------------------------------------------- one slot (on its worker)


@dataclass
class TrialRuns:
    """Creates the trial flow runs of one slot as subflows of the sweep, in one API call each.

    Calling the trial flow inside the slot task would make Prefect create a placeholder task
    run in the sweep, look for an existing subflow run and rename the new one: four API calls
    before the trial starts. Here the flow run is created directly, named and tagged (with the
    worker's process as its owner, `tracking.orphans`), with the slot's task run (a task of the
    sweep flow run) as its parent, so the UI shows every trial under the sweep all the same; the
    engine then runs that flow run.
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
    it is alive). It tells the sweep (the `events` queue) its worker, its concurrency lease and
    the trial it runs, so that the sweep can end the trial and free the lease should the worker
    die (`Watch`). Returns the outcome of every trial it ran.
    """
    import distributed
    from prefect.client.orchestration import get_client
    from prefect.context import TaskRunContext

    client = distributed.get_client()
    tickets = distributed.Queue(plan.control.tickets, client=client)
    stop = distributed.Variable(plan.control.stop_variable, client=client)
    events = distributed.Queue(plan.control.events, client=client) if plan.control.events else None
    worker = distributed.get_worker().address
    allocator = worker_allocator(os.environ, visible_gpu_count())
    gpu_ids = allocator.acquire(devices_needed(plan.gpus_per_trial))
    saved = {k: os.environ.get(k) for k in cuda_env(gpu_ids)}
    study = None  # loaded with the first ticket: a slot that gets none leaves at once, even on a cold worker
    outcomes: list[dict[str, Any]] = []

    def tell(event: dict[str, Any]) -> None:
        if events is not None:
            events.put({**event, "worker": worker, "slot": plan.slot})

    try:
        os.environ.update(cuda_env(gpu_ids))
        with (
            get_client(sync_client=True) as prefect_client,
            Lease(prefect_client, plan.control.concurrency_limit, tell),
            heartbeats.off(),
        ):
            task_run = TaskRunContext.get()
            runs = TrialRuns(
                prefect_client,
                trial_flow,
                task_run.task_run.id if task_run else None,
                # The slot task's tags name the sweep's process as owner; a trial runs in this worker.
                with_owner_tags({*(task_run.task_run.tags if task_run else ()), f"sweep:{plan.study.name}"}),
            )
            beat = plan.control.beat_variable
            sweep_alive: Callable[[], bool] = Pulse(distributed.Variable(beat, client=client)) if beat else _always
            while sweep_alive() and _take_ticket(plan.control, tickets, stop):
                if study is None:
                    study = plan.study.load(plan.slot)
                outcome = _run_one(plan, study, runs, gpu_ids, tell)
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


def _always() -> bool:
    return True


ORPHAN_SECONDS = 30.0
"""A slot whose sweep has not beaten for this long (its process died) takes no more trials."""


@dataclass
class Pulse:
    """Whether the sweep that started this slot still runs: its beat (a counter it sets every second) moves.

    Timed with this process's clock, so the clocks of the sweep's and the worker's machines
    need not agree. A sweep killed on a shared cluster leaves its slots running; they finish
    the trial at hand and take no other, so a resume does not run beside them.
    """

    beat: Any
    seen: Any = None
    since: float = 0.0

    def __call__(self) -> bool:
        with contextlib.suppress(Exception):  # unknown yet, or the scheduler slow: judge by the last one seen
            value = self.beat.get(timeout=5)
            if value != self.seen:
                self.seen, self.since = value, time.monotonic()
        return self.since == 0.0 or time.monotonic() - self.since < ORPHAN_SECONDS


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


def _run_one(
    plan: SlotPlan, study: Any, runs: TrialRuns, gpu_ids: list[str], tell: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Ask the study for a configuration, run it as a `sweep-trial` flow run, return the outcome.

    `tell` hears the trial start (its number and flow run) and end, for the sweep's `Watch`.
    """
    optuna = import_optuna()
    space, sweep = plan.study.space, plan.study.name
    asked = study.ask(space.internal())
    values = space.values(asked.params)
    asked.set_user_attr("params", values)
    flow_run = runs.create(f"{sweep}-trial-{asked.number}", {"sweep": sweep, "number": asked.number, "params": values})
    asked.set_user_attr("flow_run_id", str(flow_run.id))
    parameters = dict(
        sweep=sweep, number=asked.number, params=values, plan=plan, trial_id=storage_id(asked), gpu_ids=gpu_ids
    )
    tell({"kind": "start", "number": asked.number, "flow_run_id": str(flow_run.id)})
    state = run_created_flow_run(runs.flow, flow_run, parameters)
    tell({"kind": "end", "number": asked.number})
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
    """What the slots did: every trial's outcome, the reason a slot stopped the sweep, whether time ran out, trials lost."""

    outcomes: list[dict[str, Any]]
    stop_reason: str | None = None
    timed_out: bool = False
    lost: list[dict[str, Any]] = field(default_factory=list)


def run_trials(
    task_runner: Any,
    slot_task: Any,
    plan: SlotPlan,
    slots: int,
    to_run: int,
    resources: dict[str, Any] | None,
    study: Any,
    progress: Progress,
    log: Callable[[str], Any] = print,
) -> TrialsRun:
    """Run `to_run` trials in `slots` slot tasks on the Dask `task_runner`; return what they did.

    `plan` is every slot's plan but for its number and the queue names, set here. Each slot task
    is submitted with the Dask `resources` annotation (the trial's GPUs). `progress` is shown
    every 2 s from the study. A trial lost with its worker is run again (`Watch`); should the
    slots end with tickets left (their worker died), new slots take them.

    Raises:
        MetricNotReportedError: A trial finished without the primary metric (the sweep stopped).
    """
    if not slots:
        progress.show(0, force=True)
        return TrialsRun([])
    import distributed

    dask_client = task_runner.client
    token = uuid.uuid4().hex[:12]
    prefix = f"mltrain-{plan.study.name}-{token}"
    tickets = distributed.Queue(f"{prefix}-tickets", client=dask_client)
    events = distributed.Queue(f"{prefix}-events", client=dask_client)
    stop = distributed.Variable(f"{prefix}-stop", client=dask_client)
    stop.set(None)
    beat = distributed.Variable(f"{prefix}-beat", client=dask_client)
    beats = [0]
    beat.set(0)
    for i in range(to_run):
        tickets.put(i)
    control = replace(
        plan.control, tickets=tickets.name, stop_variable=stop.name, events=events.name, beat_variable=beat.name
    )
    plans = [replace(plan, control=control, slot=slot) for slot in range(slots)]
    watch = Watch(dask_client, events, tickets, study, plans[0], log)
    last_shown = [0.0]

    def on_wait() -> None:
        beats[0] += 1
        beat.set(beats[0])  # the slots' `Pulse`: this sweep still runs
        watch.check()
        if time.monotonic() - last_shown[0] >= 2:
            last_shown[0] = time.monotonic()
            progress.show(len(finished_trials(study)) - progress.done_before)

    outcomes: list[dict[str, Any]] = []
    deadline = control.deadline
    for _ in range(
        1 + plan.trial.max_lost_trial_retries * to_run
    ):  # each round after the first runs lost trials' tickets
        outcomes += run_slots(task_runner, slot_task, plans, resources, on_wait, watch)
        watch.check(slots_ended=True)
        if any(o.get("error") == "metric_not_reported" for o in outcomes):
            break
        if stop.get(timeout=5) or (deadline is not None and time.time() >= deadline) or tickets.qsize() == 0:
            break
        plans = plans[: max(1, min(len(plans), tickets.qsize()))]
    progress.show(len(outcomes), force=True)
    for outcome in outcomes:
        if outcome.get("error") == "metric_not_reported":
            raise MetricNotReportedError(outcome["message"])
    reason = stop.get(timeout=5)
    ran = [o for o in outcomes if o.get("number") not in {x["number"] for x in watch.lost}]
    timed_out = not reason and deadline is not None and time.time() >= deadline and len(ran) < to_run
    with contextlib.suppress(Exception):  # cleaning up scheduler state is best effort
        stop.delete()
        beat.delete()
        tickets.close()
        events.close()
    return TrialsRun(outcomes, reason or None, timed_out, watch.lost)


def run_slots(
    task_runner: Any,
    slot_task: Any,
    plans: list[SlotPlan],
    resources: dict[str, Any] | None,
    on_wait: Callable[[], None],
    watch: Watch | None = None,
) -> list[dict[str, Any]]:
    """Submit one `slot_task` per plan, wait for all (calling `on_wait` every second), return every outcome.

    A slot that failed because its worker died (Dask gave up rescheduling it: `KilledWorker`)
    gives no outcomes; its trial is the `watch`'s to end. Any other failure of a slot raises.
    """
    import dask
    import distributed

    futures = []
    for plan in plans:
        with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
            futures.append(task_runner.submit(slot_task, parameters={"plan": plan}))
    while True:  # wake when the slots end, and every second to watch the workers and show progress
        try:
            with task_runner.client.as_current():
                distributed.wait([f.wrapped_future for f in futures], timeout=1)
            break
        except TimeoutError:
            on_wait()
    outcomes: list[dict[str, Any]] = []
    for f in futures:
        try:
            outcomes += f.result()
        except Exception as exc:
            if watch is None or not (isinstance(exc, distributed.KilledWorker) or watch.dead_workers):
                raise
    return outcomes
