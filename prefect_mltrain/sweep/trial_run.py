"""One trial of a sweep, the body of its `sweep-trial` flow run: train, log, report, tell the study.

The trial logs to an MLflow child run of the sweep's parent run, reports intermediate values
to the study, where the early-termination policy decides (`TrialContext.report`, or `observe`
for values the trial's own code logged), tells the study its result and returns its outcome,
which `flows/sweep.py` makes the flow run's final state (and its data) for the slot to read.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prefect_mltrain._compat.optuna import trial_by_id
from prefect_mltrain.sweep.journal import import_optuna
from prefect_mltrain.sweep.runner import SlotPlan
from prefect_mltrain.sweep.trial import TrialContext, TrialStopped
from prefect_mltrain.tracking.links import flow_run_info, mlflow_tags


def run_trial(plan: SlotPlan, number: int, params: dict[str, Any], trial_id: int, gpu_ids: list[str]) -> dict[str, Any]:
    """Train trial `number` with `params`, log to its MLflow child run, tell the study; return the outcome.

    The outcome is a dict with `state` COMPLETE (and `value`), PRUNED (with `reason` and `step`)
    or FAIL (`error` "metric_not_reported"), the trial's `metrics`, `mlflow_run_id` and
    `flow_run_id`. An exception of the trial itself propagates (its flow run fails).
    """
    from prefect.logging import get_run_logger

    optuna = import_optuna()
    study = plan.study.load(plan.slot)
    trial = trial_by_id(study, trial_id)
    client = plan.tracking.tracking.client()
    info = flow_run_info()
    run_id = _start_child_run(client, plan, number, params, info)
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("flow_run_id", info["id"])
    context = _trial_context(plan, study, trial, client, run_id, number, params, gpu_ids)
    summary: dict[str, Any] = {"number": number, "mlflow_run_id": run_id, "flow_run_id": info["id"]}
    status = "FAILED"
    try:
        metrics = dict(plan.trial.spec.run(dict(params), context))
        outcome = {**summary, **_tell_finished(plan, study, client, run_id, number, metrics)}
        status = "FINISHED" if outcome["state"] == "COMPLETE" else "FAILED"
        return outcome
    except TrialStopped as stop:
        status = "KILLED"
        client.set_tag(run_id, "mltrain.stopped_reason", stop.reason)
        trial.set_user_attr("stopped_reason", stop.reason)
        trial.set_user_attr("stopped_at_step", stop.step)
        study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        get_run_logger().info("Trial %d stopped early: %s", number, stop.reason)
        return {
            **summary,
            "state": "PRUNED",
            "reason": stop.reason,
            "step": stop.step,
            "metrics": dict(context.reported),
        }
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status=status)


def _start_child_run(client: Any, plan: SlotPlan, number: int, params: dict[str, Any], info: dict[str, Any]) -> str:
    """Create the trial's MLflow run under the sweep's parent run, with its parameters; return its id."""
    from mlflow.entities import Param

    sweep = plan.study.name
    run = client.create_run(
        plan.tracking.experiment_id,
        run_name=f"{sweep}-trial-{number}",
        tags={
            "mlflow.parentRunId": plan.tracking.parent_run_id,
            "mltrain.sweep": sweep,
            "mltrain.trial": str(number),
            **mlflow_tags(info),
        },
    )
    run_id = str(run.info.run_id)
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run_id


def _trial_context(
    plan: SlotPlan,
    study: Any,
    trial: Any,
    client: Any,
    run_id: str,
    number: int,
    params: dict[str, Any],
    gpu_ids: list[str],
) -> TrialContext:
    """The trial's `TrialContext`: `report` logs to the run and asks the policy, `observe` only asks it."""
    from mlflow.entities import Metric

    metric = plan.trial.objective.primary_metric
    policy, deadline = plan.study.policy, plan.control.deadline

    def on_report(values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
        on_observe(values, step)

    def on_observe(values: dict[str, float], step: int) -> None:  # values already in the run
        if deadline is not None and time.time() > deadline:
            raise TrialStopped(f"the sweep's timeout passed; the trial stopped at step {step}.", step)
        if metric in values and policy is not None:
            trial.report(values[metric], step)
            if trial.should_prune():
                raise TrialStopped(policy.explain(study, number, step, values[metric]), step)

    environment = plan.tracking.tracking.environment_variables(run_id, plan.tracking.experiment_id)
    return TrialContext(number, params, metric, run_id, environment, list(gpu_ids), on_report, on_observe)


def _tell_finished(
    plan: SlotPlan, study: Any, client: Any, run_id: str, number: int, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Log a finished trial's final metrics (unless its own code did) and tell the study its value."""
    from mlflow.entities import Metric

    optuna = import_optuna()
    metric = plan.trial.objective.primary_metric
    if not plan.trial.spec.logs_own_metrics:  # a command trial's script logged them to the run itself
        now = int(time.time() * 1000)
        finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in finite.items()])
    if metric not in metrics:
        message = (
            f"Trial {number} finished but did not report the primary metric {metric!r}; it "
            f"reported {sorted(metrics)}. Fix: set `objective.primary_metric` to one of those, "
            f"or make the trial return/log {metric!r}."
        )
        client.set_tag(run_id, "mltrain.error", message)
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        return {"state": "FAIL", "error": "metric_not_reported", "message": message, "metrics": metrics}
    value = float(metrics[metric])
    study.tell(number, value)
    return {"state": "COMPLETE", "value": value, "metrics": metrics}
