"""What one trial runs: a small interface that any trainer plugs into.

A `TrialSpec` gets the trial's hyperparameters and a `TrialContext`, trains, reports
intermediate values with `context.report(...)` (where the early-termination policy may stop
it) and returns its final metrics. Built-ins:

- `FunctionTrial` (`trial_function`): your function or Prefect flow, `fn(params)` or `fn(params, context)`.
- `SklearnTrial` (`trial_sklearn`): the built-in scikit-learn fit (as in `train_sklearn`).
- `CommandTrial` (`trial_command`): a command job (as in `train_job`) with `${{search_space.x}}` placeholders.
- `PytorchTrial` (`trial_pytorch`): the PyTorch image classifier (as in `train_pytorch_model`).

The interface is in `trial_base`; this module gathers the kinds and resolves `trial` (`trial_spec`).

Your own trainer plugs in the same way: subclass `TrialSpec`, train in `run`, call
`context.report({"val_loss": ...}, step=epoch)` each epoch, and log the model to
`context.mlflow_run_id` under `model_artifact` so the best trial can be registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.trial_base import TrialContext, TrialSpec, TrialStopped
from prefect_mltrain.sweep.trial_command import CommandTrial, substitute
from prefect_mltrain.sweep.trial_function import FunctionTrial
from prefect_mltrain.sweep.trial_pytorch import PYTORCH_TUNABLE, PytorchTrial
from prefect_mltrain.sweep.trial_sklearn import SklearnTrial
from prefect_mltrain.system.imports import import_from_path

__all__ = [
    "PYTORCH_TUNABLE",
    "TRIALS",
    "CommandTrial",
    "FunctionTrial",
    "PytorchTrial",
    "SklearnTrial",
    "TrialContext",
    "TrialSpec",
    "TrialStopped",
    "substitute",
    "trial_spec",
]

TRIALS: dict[str, type[TrialSpec]] = {c.type: c for c in (CommandTrial, FunctionTrial, PytorchTrial, SklearnTrial)}


def trial_spec(value: Any) -> TrialSpec:
    """Resolve `trial`: a `TrialSpec`, a function or Prefect flow, or a dict (for deployments).

    Dicts: `{"type": "sklearn", "estimator": ..., "dataset": ...}`, `{"type": "pytorch",
    "training_data": ..., "validation_data": ...}`, `{"type": "command",
    "command": ..., "source_directory": ...}`, or `{"type": "function", "entrypoint":
    "package.module:function"}`.

    Raises:
        ConfigurationError: The value is none of those; the valid types are listed.
    """
    if isinstance(value, TrialSpec):
        return value
    if isinstance(value, Mapping):
        kind = value.get("type")
        args = {k: v for k, v in value.items() if k != "type"}
        if kind == "function":
            entry = str(args.pop("entrypoint", ""))
            try:
                fn = import_from_path(entry)
            except (ImportError, AttributeError, ValueError):
                raise ConfigurationError(
                    f"`trial.entrypoint`={entry!r} cannot be imported. Fix: give 'package.module:function'."
                ) from None
            return FunctionTrial(fn, **args)
        if kind not in TRIALS:
            raise ConfigurationError(f"`trial`: unknown type {kind!r}. Valid types: {sorted(TRIALS)}.")
        try:
            return TRIALS[kind](**args)
        except TypeError as exc:
            raise ConfigurationError(f"`trial`: {kind} does not take {sorted(args)} ({exc}).") from None
    if callable(value):
        return FunctionTrial(value)
    raise ConfigurationError(
        f"`trial` must be a TrialSpec, a function, a Prefect flow or a dict with a `type` of "
        f"{sorted(TRIALS)}, but got {type(value).__name__}: {value!r}."
    )
