"""`sweep`: Azure ML's sweep job. Trials are subflows on Dask, driven by Optuna's ask/tell.

The flow validates everything first, then opens (or resumes) an Optuna study in a journal file
under the project home and an MLflow parent run (`prefect_mltrain.sweep.study`). It submits one
`trial-slot` task per concurrent trial to the `DaskCompute` cluster; each slot asks the study
for configurations and runs each as the `sweep-trial` flow: every trial is its own flow run, a
subflow of the sweep, with its own logs, state, retries and timeout (`prefect_mltrain.sweep.runner`).
The trial reports intermediate values to the study, where the early-termination policy decides;
the trial tells the study its result, so a killed sweep loses nothing that finished. Slots take
trials until `max_total_trials`, the timeout or the goal value is reached.

This module holds the Prefect faces only: the two flows, the task, and the blocks they load.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from prefect import task
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.errors import ConfigurationError, MetricNotReportedError, SweepLockedError, TrialsLostError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.sweep import runner, study
from prefect_mltrain.sweep.config import Limits, Objective
from prefect_mltrain.sweep.journal_http import journal_for_workers
from prefect_mltrain.sweep.lease import reset_concurrency_limit
from prefect_mltrain.sweep.lost import lost_trials
from prefect_mltrain.sweep.plan import SweepPlan, check_registrable, plan_sweep
from prefect_mltrain.sweep.reconcile import crash_stale_flow_runs
from prefect_mltrain.sweep.slot_plan import SlotControl, SlotPlan, StudyRef, TrialSettings, TrialTracking
from prefect_mltrain.sweep.study import SweepResult, study_path, study_storage
from prefect_mltrain.sweep.termination import TerminationPolicy
from prefect_mltrain.sweep.trial import TrialSpec
from prefect_mltrain.sweep.trial_run import run_trial
from prefect_mltrain.sweep.watch import Progress
from prefect_mltrain.tracking.links import flow_run_info, mlflow_tags

__all__ = [
    "MetricNotReportedError",
    "SweepLockedError",
    "SweepPlan",
    "SweepResult",
    "TrialsLostError",
    "check_sweep",
    "study_path",
    "study_storage",
    "sweep",
    "sweep_trial",
    "trial_slot",
]

_sweep_lock = study.sweep_lock  # the name tests (and older callers) use


@flow(name="sweep-trial", persist_result=False, validate_parameters=False, log_prints=True)
def sweep_trial(
    sweep: str,
    number: int,
    params: dict[str, Any],
    plan: SlotPlan | None = None,
    trial_id: int = 0,
    gpu_ids: list[str] | None = None,
) -> Any:
    """One trial of a sweep: train with `params`, report, and tell the study the result.

    Ends Completed, `Pruned` (a Completed state) with the reason when the early-termination
    policy or the sweep's timeout stopped it, or Failed. The state's data is the trial's
    outcome (`sweep.trial_run.run_trial`), which the slot that ran it reads back.
    """
    if plan is None:
        raise ConfigurationError("`sweep-trial` runs only under a sweep's `trial-slot` task, which passes its plan.")
    outcome = run_trial(plan, number, params, trial_id, list(gpu_ids or []))
    if outcome["state"] == "PRUNED":
        return Completed(name="Pruned", message=outcome["reason"], data=outcome)
    if outcome["state"] == "FAIL":
        return Failed(message=outcome["message"], data=outcome)
    return Completed(data=outcome)


_trial_flows: dict[tuple[int, float | None], Any] = {}


def _trial_flow(settings: TrialSettings) -> Any:
    """`sweep_trial` with the sweep's trial retries and timeout (one flow object per pair)."""
    key = (settings.retries, settings.timeout_seconds)
    if key not in _trial_flows:
        _trial_flows[key] = sweep_trial.with_options(retries=settings.retries, timeout_seconds=settings.timeout_seconds)
    return _trial_flows[key]


@task(name="trial-slot")
def trial_slot(plan: SlotPlan) -> list[dict[str, Any]]:
    """Run trials one after another in one concurrency slot, until the sweep's tickets run out.

    The slot holds one slot of the sweep's Prefect global concurrency limit, its GPUs
    (`CUDA_VISIBLE_DEVICES`), and its trials send no flow-run heartbeats (`heartbeats.off`:
    a trial's state changes show it is alive).

    Returns:
        The outcome of every trial it ran.
    """
    return runner.trial_slot(plan, _trial_flow(plan.trial))


def _load_block(field_name: str, value: Any) -> Any:
    """Load the saved block a trial field refers to (`CommandTrial.environment`: a name, fields or a block)."""
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
) -> SweepPlan:
    """Validate every argument of a sweep together; raise `ConfigurationError` on the first problem."""
    plan = plan_sweep(
        trial, search_space, objective, sampling_algorithm_, limits, early_termination, seed, name, _load_block
    )
    if register_best_model_as is not None:
        check_model_name(register_best_model_as)
        check_registrable(plan.spec, register_best_model_as)
    return plan


# long: its docstring is the user-facing parameter documentation; the code is about 50 lines
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
            trial_timeout_seconds, goal_value, trial_retries, max_lost_trial_retries)` or its
            dict. A trial lost with its worker runs again up to `max_lost_trial_retries` (2)
            times; one lost more often ends the sweep Failed, naming it.
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
    # The docstring above is the flow's help in the Prefect UI's run form; the body is short.
    logger = get_run_logger()
    plan = check_sweep(
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
    tracker = resolve_block(tracking, MlflowTracking, "tracking").pinned()  # workers log where the flow does
    home = MltrainSettings().home_dir
    info = flow_run_info()
    with study.sweep_lock(home / "sweeps" / f"{plan.name}.lock", plan.name):
        path = study_path(home, plan.name)
        opened = study.open_sweep(plan, path, tracker, experiment_name, mlflow_tags(info), logger)
        if crashed := crash_stale_flow_runs(plan.name, info["id"]):
            logger.info("Ended %d flow run(s) left running by a killed run of this sweep (Crashed).", crashed)
        started = time.monotonic()
        stop_reason = _run_trials(plan, opened, target, tracker, logger)
        result = study.finish(opened, plan, stop_reason, info["url"])
        if lost_trials(opened.study):
            opened.client.set_terminated(opened.parent_run_id, status="FAILED")
            raise TrialsLostError(
                f"The sweep {plan.name!r} is partial: {stop_reason}. Rerun it (same name) to run them."
            )
        elapsed = time.monotonic() - started
        logger.info("Sweep %r done in %.1f s (%s): %s", plan.name, elapsed, stop_reason, study.counts(result))
        if register_best_model_as and result.best_trial is not None and plan.spec.model_artifact:
            _register_best(result, plan.spec, tracker, register_best_model_as, info["id"] or None)
        return result


def _register_best(result: SweepResult, spec: TrialSpec, tracker: MlflowTracking, name: str, flow_run_id: Any) -> None:
    """Register the best trial's model as `name` (an MLflow version and `RegisteredModel` blocks)."""
    from prefect_mltrain.tasks.register import register_model

    artifact = str(spec.model_artifact)  # the flow registers only trials that log a model
    entry = register_model(
        tracker, name, str(result.best_mlflow_run_id), artifact, spec.framework, flow_run_id=flow_run_id
    )
    result.model_block, result.model_version = entry.document_name, entry.version


def _run_trials(
    plan: SweepPlan, opened: study.OpenedSweep, target: DaskCompute, tracker: MlflowTracking, logger: Any
) -> str:
    """Run the trials left to run on `target`, showing progress; return why the sweep stopped."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    name, lim = plan.name, plan.limits
    concurrency_limit = f"mltrain-sweep-{name}"
    reset_concurrency_limit(concurrency_limit, lim.max_concurrent_trials)
    left = study.remaining(opened.study, plan)
    if opened.resumed:
        logger.info("Resuming sweep %r: %d trial(s) finished before, %d to run.", name, left.done_before, left.to_run)
    deadline = time.time() + lim.timeout_seconds if lim.timeout_seconds else None
    progress_id: Any = create_progress_artifact(
        progress=100.0 * left.done_before / max(left.capacity, 1),
        key=f"{name}-progress",
        description=f"Trials finished of {left.capacity} ({lim.max_concurrent_trials} at a time).",
    )
    progress = Progress(lambda p: update_progress_artifact(progress_id, p), left.done_before, left.capacity)
    remote = not target.runs_on_this_machine()  # workers elsewhere: no file of this machine reaches them
    spec = plan.spec.for_workers(tracker, opened.parent_run_id, remote)
    slot_plan = SlotPlan(
        study=StudyRef(name, str(opened.path), plan.space, plan.algorithm, plan.policy),
        trial=TrialSettings(
            spec, plan.objective, lim.trial_timeout_seconds, lim.trial_retries, lim.max_lost_trial_retries
        ),
        tracking=TrialTracking(tracker, opened.experiment_id, opened.parent_run_id),
        control=SlotControl(concurrency_limit, deadline, lim.goal_value),
        gpus_per_trial=target.gpus_per_trial,
    )
    slots = min(lim.max_concurrent_trials, left.to_run) if not left.goal_reached else 0
    with study.ends_parent_run_on_error(opened), target.task_runner() as task_runner:
        _say_what_runs_at_once(task_runner, slots, lim.max_concurrent_trials, logger.warning)
        journal = journal_for_workers(str(opened.path), task_runner.client.scheduler.address, remote)
        with journal as location:  # workers elsewhere reach the study through the flow
            ran = runner.run_trials(
                task_runner,
                trial_slot,
                replace(slot_plan, study=replace(slot_plan.study, path=location)),
                slots,
                left.to_run,
                target.worker_resources(),
                opened.study,
                progress,
                logger.warning,
            )
    if lost := lost_trials(opened.study):
        times = "once" if lim.max_lost_trial_retries == 0 else f"{lim.max_lost_trial_retries + 1} times"
        return (
            f"trials {lost} were lost (their worker or process died) {times} each and were not run again "
            f"(`Limits.max_lost_trial_retries`={lim.max_lost_trial_retries})"
        )
    if ran.stop_reason:
        return ran.stop_reason
    if ran.timed_out:
        return f"timeout_seconds={lim.timeout_seconds} passed"
    return left.stop_reason


def _say_what_runs_at_once(task_runner: Any, slots: int, asked: int, warn: Any) -> None:
    """Say once when the compute runs fewer trials at a time than `max_concurrent_trials` asks."""
    try:
        client = task_runner.client
        # A local cluster's workers may still be registering: wait for as many as it was made with.
        expected = getattr(task_runner, "expected_workers", None)  # the warm cluster's
        expected = expected or len(getattr(getattr(client, "cluster", None), "worker_spec", None) or {}) or 1
        client.wait_for_workers(expected, timeout=10)
        threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    except Exception:  # noqa: BLE001 - an adaptive or remote cluster with none yet: it may grow, nothing to say
        return
    if 0 < threads < slots:
        warn(
            "max_concurrent_trials=%d, but the compute runs %d trial(s) at a time (%d worker thread(s)); "
            "the rest wait for a free one. Fix: give the DaskCompute more workers, e.g. "
            "DaskCompute(cluster_kwargs={'n_workers': %d, 'threads_per_worker': 1}).",
            asked,
            threads,
            threads,
            slots,
        )
