"""Continuing an Optuna trial in another process than the one that asked for it."""

from __future__ import annotations

from typing import Any


def trial_id(trial: Any) -> int:
    """The storage id of a `Trial` or `FrozenTrial` (private in Optuna: `_trial_id`)."""
    return int(trial._trial_id)


def trial_by_id(study: Any, storage_id: int) -> Any:
    """The running trial with storage id `storage_id`, to report to, prune and set attributes on.

    Optuna has no public constructor for a trial object another process asked for; `Trial` with
    a study and a storage id is what `Study.ask` itself builds.
    """
    import optuna

    return optuna.trial.Trial(study, storage_id)
