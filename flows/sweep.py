"""`sweep`: Azure ML's sweep job. Trials are subflows on Dask, driven by Optuna's ask/tell.

The flow validates everything first, then opens (or resumes) an Optuna study in SQLite under
the project home and an MLflow parent run. It asks the sampler for up to
`max_concurrent_trials` configurations, submits one `run-trial` task per configuration to the
`DaskCompute` cluster, and each task calls the `sweep-trial` flow: every trial is its own flow
run, a subflow of the sweep, with its own logs, state, retries and timeout. The trial reports
intermediate values to the study, where the early-termination policy decides; the trial tells
the study its result, so a killed sweep loses nothing that finished. As trials end the sweep
asks for more, until `max_total_trials`, the timeout or the goal value is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed

from prefect_mltrain._compat import heartbeats
from prefect_mltrain._compat.optuna import trial_by_id
from prefect_mltrain._compat.optuna import trial_id as storage_id
from prefect_mltrain._compat.prefect_engine import create_flow, create_flow_run, run_created_flow_run
from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.compute.devices import cuda_env, devices_needed, worker_allocator
from prefect_mltrain.errors import ConfigurationError, MltrainError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.sweep import charts
from prefect_mltrain.sweep.config import Limits, Objective, as_dataclass
from prefect_mltrain.sweep.journal import import_optuna, journal_storage
from prefect_mltrain.sweep.sampling import SamplingAlgorithm, sampling_algorithm
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.termination import TerminationPolicy, termination_policy
from prefect_mltrain.sweep.trial import TrialContext, TrialSpec, TrialStopped, trial_spec
from prefect_mltrain.tracking.links import flow_run_info, mlflow_tags

_SWEEP_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class MetricNotReportedError(MltrainError):
    """A finished trial did not report the sweep's primary metric."""


class SweepLockedError(MltrainError):
    """Another process is running a sweep of the same name."""


@dataclass
class SweepResult:
    """What a sweep leaves: its best trial, every trial, and where to look."""

    name: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_mlflow_run_id: str | None
    mlflow_parent_run_id: str
    experiment_id: str
    flow_run_url: str
    stop_reason: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    model_block: str | None = None
    model_version: int | None = None


@dataclass
class SlotJob:
    """One concurrent-trial slot's work order (pickled to its Dask worker with the task).

    A slot holds one slot of the sweep's concurrency limit and runs trials one after another:
    it takes a ticket from the sweep's queue, asks the study for a configuration, runs the
    trial flow and tells the study, until the tickets run out or the sweep must stop. Asking
    on the worker saves a round trip through the flow per trial; every trial is still its own
    flow run.
    """

    sweep: str
    slot: int
    storage_path: str
    space: SearchSpace
    algorithm: Any
    spec: TrialSpec
    objective: Objective
    policy: TerminationPolicy | None
    tracking: MlflowTracking
    experiment_id: str
    parent_run_id: str
    gpus_per_trial: float
    concurrency_limit: str
    tickets: str
    stop_variable: str
    deadline: float | None
    goal_value: float | None
    timeout_seconds: float | None
    retries: int
    gpu_ids: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- worker side

_studies: dict[tuple[str, str, int], Any] = {}
_studies_lock = threading.Lock()
_outcomes: dict[tuple[str, int], dict[str, Any]] = {}


def study_path(home: Path, name: str) -> Path:
    """Where the sweep `name` keeps its Optuna study: a journal file of its own under the project home."""
    directory = home / "sweeps"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.journal"


def study_storage(path: Path | str) -> Any:
    """The Optuna storage of one sweep: an append-only journal (Optuna's `JournalFileBackend`).

    Every process that runs a trial appends to it under a file lock, so it is safe across
    processes (and machines sharing the folder). A trial's ask, attributes, reports and tell
    cost about 4 ms here against about 47 ms on SQLite (`RDBStorage`), on every Dask worker.
    """
    return journal_storage(str(path))


def _worker_study(job: SlotJob) -> Any:
    """The study with this slot's sampler and the policy's pruner, loaded once per process and slot."""
    key = (job.storage_path, job.sweep, job.slot)
    with _studies_lock:
        study = _studies.get(key)
        if study is None:
            optuna = import_optuna()
            pruner = job.policy.pruner() if job.policy else optuna.pruners.NopPruner()
            algorithm = job.algorithm
            sampler = algorithm.sampler(job.space, job.slot) if isinstance(algorithm, SamplingAlgorithm) else algorithm
            study = optuna.load_study(
                study_name=job.sweep, storage=study_storage(job.storage_path), pruner=pruner, sampler=sampler
            )
            _studies[key] = study
        return study


@flow(name="sweep-trial", persist_result=False, validate_parameters=False, log_prints=True)
def sweep_trial(sweep: str, number: int, params: dict[str, Any], job: Any = None, trial_id: int = 0) -> Any:
    """One trial of a sweep: train with `params`, report, and tell the study the result.

    Ends Completed with the metrics, `Pruned` (a Completed state) with the reason when the
    early-termination policy or the sweep's timeout stopped it, or Failed.
    """
    from mlflow.entities import Metric, Param

    optuna = import_optuna()
    logger = get_run_logger()
    study = _worker_study(job)
    trial = trial_by_id(study, trial_id)
    metric = job.objective.primary_metric
    client = job.tracking.client()
    info = flow_run_info()
    run = client.create_run(
        job.experiment_id,
        run_name=f"{sweep}-trial-{number}",
        tags={
            "mlflow.parentRunId": job.parent_run_id,
            "mltrain.sweep": sweep,
            "mltrain.trial": str(number),
            **mlflow_tags(info),
        },
    )
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("flow_run_id", info["id"])
    gpu_ids = list(job.gpu_ids)

    def on_report(values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        on_observe(values, step)

    def on_observe(values: dict[str, float], step: int) -> None:  # values already in the run
        if job.deadline is not None and time.time() > job.deadline:
            raise TrialStopped(f"the sweep's timeout passed; the trial stopped at step {step}.", step)
        if metric in values and job.policy is not None:
            trial.report(values[metric], step)
            if trial.should_prune():
                raise TrialStopped(job.policy.explain(study, number, step, values[metric]), step)

    context = TrialContext(
        number,
        params,
        metric,
        run_id,
        job.tracking.environment_variables(run_id, job.experiment_id),
        gpu_ids,
        on_report,
        on_observe,
    )
    status = "FAILED"
    summary: dict[str, Any] = {"number": number, "mlflow_run_id": run_id, "flow_run_id": info["id"]}
    try:
        metrics = dict(job.spec.run(dict(params), context))
        now = int(time.time() * 1000)
        if not job.spec.logs_own_metrics:  # a command trial's script logged them to the run itself
            client.log_batch(
                run_id,
                metrics=[
                    Metric(k, v, now, 0) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)
                ],
            )
        if metric not in metrics:
            message = (
                f"Trial {number} finished but did not report the primary metric {metric!r}; it "
                f"reported {sorted(metrics)}. Fix: set `objective.primary_metric` to one of those, "
                f"or make the trial return/log {metric!r}."
            )
            client.set_tag(run_id, "mltrain.error", message)
            study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            _outcomes[(sweep, number)] = {
                **summary,
                "state": "FAIL",
                "error": "metric_not_reported",
                "message": message,
                "metrics": metrics,
            }
            return Failed(message=message)
        value = float(metrics[metric])
        study.tell(number, value)
        status = "FINISHED"
        _outcomes[(sweep, number)] = {**summary, "state": "COMPLETE", "value": value, "metrics": metrics}
        return metrics
    except TrialStopped as stop:
        status = "KILLED"
        client.set_tag(run_id, "mltrain.stopped_reason", stop.reason)
        trial.set_user_attr("stopped_reason", stop.reason)
        trial.set_user_attr("stopped_at_step", stop.step)
        study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        logger.info("Trial %d stopped early: %s", number, stop.reason)
        _outcomes[(sweep, number)] = {
            **summary,
            "state": "PRUNED",
            "reason": stop.reason,
            "step": stop.step,
            "metrics": dict(context.reported),
        }
        return Completed(name="Pruned", message=stop.reason)
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status=status)


_trial_flows: dict[tuple[int, float | None], Any] = {}


def _trial_flow(job: SlotJob) -> Any:
    key = (job.retries, job.timeout_seconds)
    if key not in _trial_flows:
        _trial_flows[key] = sweep_trial.with_options(retries=job.retries, timeout_seconds=job.timeout_seconds)
    return _trial_flows[key]


@dataclass
class _TrialRuns:
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


def _run_one(job: SlotJob, study: Any, runs: _TrialRuns) -> dict[str, Any]:
    """Ask the study for a configuration, run it as a `sweep-trial` flow run, return the outcome."""
    optuna = import_optuna()
    asked = study.ask(job.space.internal())
    values = job.space.values(asked.params)
    asked.set_user_attr("params", values)
    flow_run = runs.create(
        f"{job.sweep}-trial-{asked.number}", {"sweep": job.sweep, "number": asked.number, "params": values}
    )
    state = run_created_flow_run(
        runs.flow,
        flow_run,
        dict(sweep=job.sweep, number=asked.number, params=values, job=job, trial_id=storage_id(asked)),
    )
    outcome = _outcomes.pop((job.sweep, asked.number), None)
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


@task(name="trial-slot")
def trial_slot(job: SlotJob) -> list[dict[str, Any]]:
    """Run trials one after another in one concurrency slot, until the sweep's tickets run out.

    The slot holds one slot of the sweep's Prefect global concurrency limit, its GPUs
    (`CUDA_VISIBLE_DEVICES`), and its trials send no flow-run heartbeats (`heartbeats.off`:
    a trial's state changes show it is alive).

    Returns:
        The outcome of every trial it ran.
    """
    import distributed
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.context import TaskRunContext

    client = distributed.get_client()
    tickets = distributed.Queue(job.tickets, client=client)
    stop = distributed.Variable(job.stop_variable, client=client)
    allocator = worker_allocator(os.environ, _gpu_count())
    job.gpu_ids = allocator.acquire(devices_needed(job.gpus_per_trial))
    saved = {k: os.environ.get(k) for k in cuda_env(job.gpu_ids)}
    study = None  # loaded with the first ticket: a slot that gets none leaves at once, even on a cold worker
    outcomes: list[dict[str, Any]] = []
    try:
        os.environ.update(cuda_env(job.gpu_ids))
        with (
            concurrency(job.concurrency_limit, occupy=1),
            heartbeats.off(),
            get_client(sync_client=True) as prefect_client,
        ):
            task_run = TaskRunContext.get()
            runs = _TrialRuns(
                prefect_client,
                _trial_flow(job),
                task_run.task_run.id if task_run else None,
                sorted({*(task_run.task_run.tags if task_run else ()), f"sweep:{job.sweep}"}),
            )
            while True:
                if job.deadline is not None and time.time() >= job.deadline:
                    break
                if stop.get(timeout=5) is not None:
                    break
                try:
                    # qsize first: an empty queue's `get` times out with an error in the scheduler log.
                    if tickets.qsize() == 0:
                        break
                    tickets.get(timeout=1)
                except (TimeoutError, asyncio.TimeoutError):
                    break
                if study is None:
                    study = _worker_study(job)
                outcome = _run_one(job, study, runs)
                outcomes.append(outcome)
                if outcome.get("error") == "metric_not_reported":
                    stop.set(outcome["message"])
                    break
                if outcome["state"] == "COMPLETE" and job.objective.reached(outcome["value"], job.goal_value):
                    stop.set(f"goal_value {job.goal_value} reached by trial {outcome['number']}")
                    break
    finally:
        allocator.release(job.gpu_ids)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return outcomes


def _gpu_count() -> int:
    from prefect_mltrain.blocks.compute import visible_gpu_count

    return visible_gpu_count()


# ----------------------------------------------------------------------------- flow side


@contextlib.contextmanager
def _sweep_lock(path: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock on the sweep name; the OS drops it when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SweepLockedError(
                f"The sweep {name!r} is already running ({holder}). A sweep name runs in one "
                f"process at a time, so its trials are not run twice. Fix: wait for it, cancel it, "
                f"or give this sweep another `name`."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_block(field_name: str, value: Any) -> Any:
    """Load the saved block a trial field refers to (`CommandTrial.environment`: a name, fields or a block)."""
    from collections.abc import Mapping

    from prefect_mltrain.blocks.environment import TrainingEnvironment

    if field_name != "environment":
        raise ConfigurationError(f"A trial refers to a block in {field_name!r}, which the sweep cannot load.")
    if isinstance(value, Mapping):
        return TrainingEnvironment(**value)
    return resolve_block(value, TrainingEnvironment, "trial.environment")


def check_sweep(
    trial: Any,
    search_space: Any,
    objective: Any,
    sampling_algorithm_: Any,
    limits: Any,
    early_termination: Any,
    seed: int | None,
    name: str | None,
    register_best_model_as: str | None,
) -> tuple[TrialSpec, SearchSpace, Objective, Any, Limits, TerminationPolicy | None, str]:
    """Validate every argument of a sweep together; raise `ConfigurationError` on the first problem."""
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
    spec = trial_spec(trial).with_blocks(_load_block)
    spec.check(space)
    if name is None:
        name = f"sweep-{int(time.time())}"
    if not isinstance(name, str) or not _SWEEP_NAME.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-") or "my-sweep"
        raise ConfigurationError(
            f"`name`={name!r} must be lowercase letters and digits joined by single dashes (it names "
            f"the study, the concurrency limit and the runs). Fix: use {suggestion!r}."
        )
    if register_best_model_as is not None:
        check_model_name(register_best_model_as)
        if not spec.model_artifact:
            raise ConfigurationError(
                f"`register_best_model_as`={register_best_model_as!r} needs trials that log a model, but "
                f"this {spec.type} trial logs none. Fix: SklearnTrial(log_model=True), "
                f"CommandTrial(model_path='outputs/...'), or FunctionTrial(fn, model_artifact='model')."
            )
    return spec, space, goal, algorithm, lim, policy, name


def _open_study(
    name: str, path: Path, space: SearchSpace, goal: Objective, algorithm: Any, policy: TerminationPolicy | None
) -> tuple[Any, bool]:
    optuna = import_optuna()
    sampler = algorithm.sampler(space) if isinstance(algorithm, SamplingAlgorithm) else algorithm
    pruner = policy.pruner() if policy else optuna.pruners.NopPruner()
    storage = study_storage(path)
    resumed = name in optuna.get_all_study_names(storage)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction=goal.goal, load_if_exists=True
    )
    stored = study.user_attrs.get("search_space")
    if resumed and stored is not None and stored != space.to_dict():
        raise ConfigurationError(
            f"The sweep {name!r} exists with another search space ({stored}), so its finished trials "
            f"cannot guide this one ({space.to_dict()}). Fix: give a new `name`, or the same search space "
            f"to resume it."
        )
    if resumed and study.direction.name.lower() != goal.goal:
        raise ConfigurationError(
            f"The sweep {name!r} exists with goal {study.direction.name.lower()!r}, but got goal="
            f"{goal.goal!r}. Fix: give a new `name`, or the same goal to resume it."
        )
    study.set_user_attr("search_space", space.to_dict())
    study.set_user_attr("primary_metric", goal.primary_metric)
    return study, resumed


def _recover(study: Any, logger: Any) -> int:
    """Mark trials left RUNNING by a killed sweep as failed and queue their configurations again."""
    optuna = import_optuna()
    requeued = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_by_id(study, storage_id(t)).set_user_attr("abandoned", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        requeued += 1
    if requeued:
        logger.info("Resumed: %d trial(s) left running by the previous run were queued again.", requeued)
    return requeued


def _kill_stale_mlflow_runs(client: Any, experiment_id: str, name: str, parent_run_id: str | None) -> int:
    """End MLflow runs of this sweep left RUNNING by a killed process (KILLED)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{name}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    stale = [r for r in runs if r.info.run_id != parent_run_id]
    for r in stale:
        client.set_terminated(r.info.run_id, status="KILLED")
    return len(stale)


def _finished(study: Any) -> list[Any]:
    optuna = import_optuna()
    states = optuna.trial.TrialState
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (states.COMPLETE, states.PRUNED) or (t.state == states.FAIL and not t.user_attrs.get("abandoned"))
    ]


def _rows(study: Any, goal: Objective) -> list[dict[str, Any]]:
    optuna = import_optuna()
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("abandoned"):
            continue
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                goal.primary_metric: t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                **{k: v for k, v in (t.user_attrs.get("params") or {}).items()},
                "stopped_reason": t.user_attrs.get("stopped_reason"),
                "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
                "flow_run_id": t.user_attrs.get("flow_run_id"),
            }
        )
    done = [r for r in rows if r[goal.primary_metric] is not None]
    rest = [r for r in rows if r[goal.primary_metric] is None]
    done.sort(key=lambda r: r[goal.primary_metric], reverse=goal.maximize)
    return done + rest


@flow(name="sweep")
def sweep(
    trial: Any,
    search_space: dict[str, Any],
    objective: Objective | dict[str, Any] | None = None,
    sampling_algorithm: str | Any = "random",
    limits: Limits | dict[str, Any] | None = None,
    early_termination: TerminationPolicy | dict[str, Any] | None = None,
    seed: int | None = None,
    name: str | None = None,
    compute: DaskCompute | str | None = None,
    tracking: MlflowTracking | str | None = None,
    experiment_name: str | None = None,
    register_best_model_as: str | None = None,
) -> SweepResult:
    """Tune hyperparameters like Azure ML's sweep job: every trial a subflow on Dask.

    Rerunning a sweep with the same `name` resumes it: finished trials are not run again and
    the sampler sees their results; trials a killed run left behind are run again.

    Args:
        trial: What each trial runs: a `TrialSpec` (`SklearnTrial`, `CommandTrial`,
            `FunctionTrial`), a function or Prefect flow taking `(params)` or `(params,
            context)`, or a dict with a `type` (for deployments).
        search_space: Hyperparameter name to distribution (`prefect_mltrain.sweep.choice`,
            `uniform`, ...) or its dict form, e.g. `{"type": "uniform", "min_value": 0, "max_value": 1}`.
        objective: `Objective(primary_metric, goal)` or its dict.
        sampling_algorithm: `grid`, `random`, `bayesian` (TPE) or `sobol`, or an Optuna sampler.
        limits: `Limits(max_total_trials, max_concurrent_trials, timeout_seconds,
            trial_timeout_seconds, goal_value, trial_retries)` or its dict.
        early_termination: A policy (`BanditPolicy`, `MedianStoppingPolicy`,
            `TruncationSelectionPolicy`, `AshaPolicy`, `HyperbandPolicy`) or its dict,
            e.g. `{"type": "bandit", "slack_factor": 0.1, "evaluation_interval": 1}`.
        seed: Seed of the sampler; the same seed draws the same configurations.
        name: The sweep's name (lowercase, dashes); reuse it to resume.
        compute: A DaskCompute, a saved one's name, or None for a local Dask cluster.
        tracking: An MlflowTracking, a saved one's name, or None for the local store.
        experiment_name: MLflow experiment; the tracking block's when None.
        register_best_model_as: Register the best trial's model under this name.

    Returns:
        The best trial, every trial's row, the MLflow parent run and the registered model.

    Example:
        ```python
        from prefect_mltrain.flows import sweep
        from prefect_mltrain.sweep import BanditPolicy, Limits, Objective, SklearnTrial, choice, loguniform

        result = sweep(
            trial=SklearnTrial(estimator="sklearn.svm.SVC", dataset="digits", log_model=True),
            search_space={"C": loguniform.between(1e-2, 1e2), "kernel": choice(["rbf", "linear"])},
            objective=Objective("accuracy", "maximize"),
            sampling_algorithm="random", seed=0,
            limits=Limits(max_total_trials=20, max_concurrent_trials=2, timeout_seconds=1800),
            name="digits-svc", register_best_model_as="digits-svc",
        )
        print(result.best_value, result.best_params, result.model_block)
        ```
    """
    from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
    from prefect.client.orchestration import get_client

    logger = get_run_logger()
    spec, space, goal, algorithm, lim, policy, name = check_sweep(
        trial,
        search_space,
        objective,
        sampling_algorithm,
        limits,
        early_termination,
        seed,
        name,
        register_best_model_as,
    )
    target = resolve_block(compute, DaskCompute, "compute")
    target.check_reachable()
    tracker = resolve_block(tracking, MlflowTracking, "tracking")
    home = MltrainSettings().home_dir
    path = study_path(home, name)
    info = flow_run_info()
    optuna = import_optuna()

    with _sweep_lock(home / "sweeps" / f"{name}.lock", name):
        study, resumed = _open_study(name, path, space, goal, algorithm, policy)
        _recover(study, logger)
        experiment_id = tracker.ensure_experiment(experiment_name)
        client = tracker.client()
        parent_run_id = study.user_attrs.get("mlflow_parent_run_id")
        if parent_run_id:
            client.update_run(parent_run_id, status="RUNNING")
        else:
            parent = client.create_run(
                experiment_id,
                run_name=name,
                tags={"mltrain.sweep": name, "mltrain.sweep_role": "parent", **mlflow_tags(info)},
            )
            parent_run_id = parent.info.run_id
            study.set_user_attr("mlflow_parent_run_id", parent_run_id)
            from mlflow.entities import Param

            client.log_batch(
                parent_run_id,
                params=[
                    Param("sampling_algorithm", getattr(algorithm, "name", type(algorithm).__name__)),
                    Param("primary_metric", goal.primary_metric),
                    Param("goal", goal.goal),
                    Param("search_space", json.dumps(space.to_dict())[:6000]),
                    Param("early_termination", json.dumps(policy.to_dict() if policy else None)),
                    Param("max_total_trials", str(lim.max_total_trials)),
                    Param("max_concurrent_trials", str(lim.max_concurrent_trials)),
                    Param("trial", spec.describe()[:6000]),
                ],
            )
        killed = _kill_stale_mlflow_runs(client, experiment_id, name, parent_run_id)
        if killed:
            logger.info("Ended %d MLflow run(s) left RUNNING by a killed run of this sweep (KILLED).", killed)

        concurrency_limit = f"mltrain-sweep-{name}"
        with get_client(sync_client=True) as prefect_client:
            prefect_client.upsert_global_concurrency_limit_by_name(concurrency_limit, lim.max_concurrent_trials)

        done_before = len(_finished(study))
        capacity = lim.max_total_trials
        if isinstance(algorithm, SamplingAlgorithm):
            capacity = int(min(capacity, algorithm.size(space)))
        to_run = max(0, capacity - done_before)
        if resumed:
            logger.info("Resuming sweep %r: %d trial(s) finished before, %d to run.", name, done_before, to_run)
        started = time.monotonic()
        deadline = time.time() + lim.timeout_seconds if lim.timeout_seconds else None
        progress_id: Any = create_progress_artifact(
            progress=100.0 * done_before / max(capacity, 1),
            key=f"{name}-progress",
            description=f"Trials finished of {capacity} ({lim.max_concurrent_trials} at a time).",
        )
        best: dict[str, Any] = {}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if goal.better(float(t.value), best.get("value")):
                best = {"value": float(t.value), "number": t.number}
        stop_reason = "max_total_trials reached"
        if to_run == 0:
            stop_reason = "nothing left to run: the sweep had already finished its trials"
        status = "FAILED"
        finished = 0
        stopping = goal.reached(best["value"], lim.goal_value) if best else False
        if stopping:
            stop_reason = f"goal_value {lim.goal_value} was reached before"
        try:
            with target.task_runner() as runner:
                import dask
                import distributed

                token = uuid.uuid4().hex[:12]
                slots = min(lim.max_concurrent_trials, to_run) if not stopping else 0
                futures = []
                if slots:
                    dask_client = runner.client
                    tickets = distributed.Queue(f"mltrain-{name}-{token}-tickets", client=dask_client)
                    stop_var = distributed.Variable(f"mltrain-{name}-{token}-stop", client=dask_client)
                    stop_var.set(None)
                    for i in range(to_run):
                        tickets.put(i)
                    resources = target.worker_resources()
                    for slot in range(slots):
                        job = SlotJob(
                            sweep=name,
                            slot=slot,
                            storage_path=str(path),
                            space=space,
                            algorithm=algorithm,
                            spec=spec,
                            objective=goal,
                            policy=policy,
                            tracking=tracker,
                            experiment_id=experiment_id,
                            parent_run_id=parent_run_id,
                            gpus_per_trial=target.gpus_per_trial,
                            concurrency_limit=concurrency_limit,
                            tickets=tickets.name,
                            stop_variable=stop_var.name,
                            deadline=deadline,
                            goal_value=lim.goal_value,
                            timeout_seconds=lim.trial_timeout_seconds,
                            retries=lim.trial_retries,
                        )
                        with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
                            futures.append(runner.submit(trial_slot, parameters={"job": job}))
                    last = -1
                    while True:  # wake when the slots end, and every 2 s to show progress (not an API write per trial)
                        try:
                            with dask_client.as_current():
                                distributed.wait([f.wrapped_future for f in futures], timeout=2)
                            break
                        except TimeoutError:
                            pass
                        n = len(_finished(study)) - done_before
                        if n != last:
                            update_progress_artifact(progress_id, 100.0 * (done_before + n) / max(capacity, 1))
                            last = n
                outcomes = [o for f in futures for o in f.result()]
                finished = len(outcomes)
                update_progress_artifact(progress_id, 100.0 * (done_before + finished) / max(capacity, 1))
                for outcome in outcomes:
                    if outcome.get("error") == "metric_not_reported":
                        raise MetricNotReportedError(outcome["message"])
                if slots:
                    reason = stop_var.get(timeout=5)
                    if reason:
                        stop_reason = reason
                    elif deadline is not None and time.time() >= deadline and finished < to_run:
                        stop_reason = f"timeout_seconds={lim.timeout_seconds} passed"
                    try:
                        stop_var.delete()
                        tickets.close()
                    except Exception:  # cleaning up scheduler state is best effort
                        pass
            status = "FINISHED"
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            raise
        finally:
            if status != "FINISHED":
                client.set_terminated(parent_run_id, status=status)

        rows = _rows(study, goal)
        elapsed = time.monotonic() - started
        best_row = next((r for r in rows if r[goal.primary_metric] is not None), None)
        counts = {s: sum(1 for r in rows if r["state"] == s) for s in ("COMPLETE", "PRUNED", "FAIL")}
        create_table_artifact(
            key=f"{name}-leaderboard",
            table=[{k: v for k, v in r.items()} for r in rows],
            description=f"Sweep {name!r}: trials best first by {goal.primary_metric} ({goal.goal}). "
            f"{counts['COMPLETE']} completed, {counts['PRUNED']} stopped early, {counts['FAIL']} failed; "
            f"stopped because {stop_reason}.",
        )
        decisions = [{"trial": r["trial"], "reason": r["stopped_reason"]} for r in rows if r["state"] == "PRUNED"]
        charts.publish(name, study, goal, rows, decisions, client, parent_run_id, policy)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric("trials_completed", counts["COMPLETE"], now, 0),
            Metric("trials_pruned", counts["PRUNED"], now, 0),
            Metric("trials_failed", counts["FAIL"], now, 0),
        ]
        if best_row is not None:
            metrics.append(Metric(f"best_{goal.primary_metric}", float(best_row[goal.primary_metric]), now, 0))
            client.set_tag(parent_run_id, "mltrain.best_trial", str(best_row["trial"]))
            client.set_tag(parent_run_id, "mltrain.best_run_id", str(best_row["mlflow_run_id"]))
        client.log_batch(parent_run_id, metrics=metrics)
        client.set_tag(parent_run_id, "mltrain.stop_reason", stop_reason)
        client.set_terminated(parent_run_id, status="FINISHED")
        logger.info("Sweep %r done in %.1f s (%s): %s", name, elapsed, stop_reason, counts)

        result = SweepResult(
            name=name,
            best_trial=best_row["trial"] if best_row else None,
            best_value=best_row[goal.primary_metric] if best_row else None,
            best_params={k: best_row[k] for k in space} if best_row else {},
            best_mlflow_run_id=best_row["mlflow_run_id"] if best_row else None,
            mlflow_parent_run_id=parent_run_id,
            experiment_id=experiment_id,
            flow_run_url=info["url"],
            stop_reason=stop_reason,
            trials=rows,
        )
        if register_best_model_as and best_row is not None and spec.model_artifact:
            from prefect_mltrain.tasks.register import register_model

            entry = register_model(
                tracker,
                register_best_model_as,
                best_row["mlflow_run_id"],
                spec.model_artifact,
                spec.framework,
                flow_run_id=info["id"] or None,
            )
            result.model_block, result.model_version = entry.document_name, entry.version
        return result
