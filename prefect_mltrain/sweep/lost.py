"""Trials lost with their process: how they end, run again, and count.

A trial whose worker or process died is *lost*: FAIL in the study and, while retries are left
(`Limits.max_lost_trial_retries`, like Ray Tune's `max_failures` and Dask's
`allowed-failures`), its configuration is queued as a new trial recorded as a retry of it
(`retry_of`). The lost attempt is `abandoned`: not counted, not on the leaderboard. A trial
lost more often stays a counted FAIL with `lost` set, and the sweep ends Failed naming it; a
rerun of the sweep runs it again (`recover`).
"""

from __future__ import annotations

from typing import Any

from prefect_mltrain._compat.optuna import trial_by_id
from prefect_mltrain._compat.optuna import trial_id as storage_id
from prefect_mltrain.sweep.journal import import_optuna


def lose_trial(study: Any, number: int, reason: str, max_retries: int) -> dict[str, Any] | None:
    """A trial whose process died: FAIL in the study, and queued again while retries are left.

    The lost trial is marked `abandoned` and its configuration is queued as a new trial with
    `retry_of`; after `max_retries` retries of one configuration it stays a counted FAIL with
    `lost` set. Returns None when the trial had already finished, else `{"number", "retried",
    "params", "mlflow_run_id", "flow_run_id"}`.
    """
    optuna = import_optuna()
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if frozen is None or frozen.state.is_finished():
        return None
    attempt = int(frozen.user_attrs.get("lost_attempt", 0))
    retried = attempt < max_retries
    trial = trial_by_id(study, storage_id(frozen))
    trial.set_user_attr("lost", reason)
    if retried:
        trial.set_user_attr("abandoned", True)
    study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    if retried:
        study.enqueue_trial(
            frozen.params, user_attrs={"retry_of": number, "lost_attempt": attempt + 1}, skip_if_exists=False
        )
    return {
        "number": number,
        "retried": retried,
        "params": dict(frozen.params),
        "mlflow_run_id": frozen.user_attrs.get("mlflow_run_id"),
        "flow_run_id": frozen.user_attrs.get("flow_run_id"),
    }


def recover(study: Any) -> int:
    """Mark trials left RUNNING by a killed sweep as failed and queue their configurations again.

    Trials an earlier run lost more often than its `max_lost_trial_retries` are queued again too.

    Returns:
        How many trials were queued again.
    """
    optuna = import_optuna()
    requeued = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_by_id(study, storage_id(t)).set_user_attr("abandoned", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        requeued += 1
    for number in lost_trials(study):  # lost past the retry limit in an earlier run: this rerun runs them
        frozen = study.get_trials(deepcopy=False)[number]  # its retry supersedes it (`superseded`)
        study.enqueue_trial(frozen.params, user_attrs={"retry_of": number}, skip_if_exists=False)
        requeued += 1
    return requeued


def superseded(study: Any) -> set[int]:
    """Trials run again as another trial (some trial's `retry_of`): not counted, not on the leaderboard."""
    return {int(t.user_attrs["retry_of"]) for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs}


def lost_trials(study: Any) -> list[int]:
    """Trials lost more often than they are retried (counted FAILs with `lost` set), not queued again since."""
    again = superseded(study)
    return [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("lost") and not t.user_attrs.get("abandoned") and t.number not in again
    ]


def finished_trials(study: Any) -> list[Any]:
    """The trials that count as run: completed, pruned, or failed (not those abandoned or run again)."""
    states = import_optuna().trial.TrialState
    again = superseded(study)
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (states.COMPLETE, states.PRUNED)
        or (t.state == states.FAIL and not t.user_attrs.get("abandoned") and t.number not in again)
    ]
