"""The one place Optuna is imported, lazily, with an install hint when it is missing."""

from __future__ import annotations

from typing import Any

from prefect_mltrain.errors import missing_extra


def import_optuna() -> Any:
    """Import and return `optuna`.

    Raises:
        MissingDependencyError: Optuna is not installed; the message gives the pip command.
    """
    try:
        import optuna
    except ImportError:
        raise missing_extra("optuna", "sweep") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
