"""`FunctionTrial`: your function or Prefect flow as a sweep's trial."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.trial_base import TrialContext, TrialSpec


@dataclass
class FunctionTrial(TrialSpec):
    """Your function or Prefect flow: `fn(params)` or `fn(params, context)` returning metrics.

    A Prefect flow runs its body (`flow.fn`) as the trial's flow run. A returned number is the
    primary metric. Set `model_artifact` if the function logs a model to
    `context.mlflow_run_id` and the best one should be registrable.
    """

    fn: Callable[..., Any]
    model_artifact: str | None = None
    framework: str = "unknown"
    type: ClassVar[str] = "function"

    def _callable(self) -> Callable[..., Any]:
        return getattr(self.fn, "fn", self.fn)  # a prefect Flow's body

    def check(self, space: SearchSpace) -> None:
        fn = self._callable()
        if not callable(fn):
            raise ConfigurationError(f"`trial` must be callable, but got {self.fn!r}.")
        try:
            positional = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            ]
        except (TypeError, ValueError):
            return
        if not positional:
            raise ConfigurationError(
                f"`trial` {getattr(fn, '__name__', fn)!r} must take the params dict as its first "
                f"argument, e.g. `def trial(params, context): ...`, but it takes none."
            )

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        fn = self._callable()
        try:
            takes_context = (
                len(
                    [
                        p
                        for p in inspect.signature(fn).parameters.values()
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    ]
                )
                >= 2
            )
        except (TypeError, ValueError):
            takes_context = False
        out = fn(params, context) if takes_context else fn(params)
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            return {context.primary_metric: float(out)}
        if out is None:
            return dict(context.reported)
        if not isinstance(out, Mapping):
            raise ConfigurationError(
                f"A trial function must return a dict of metrics or a number, but "
                f"{getattr(fn, '__name__', fn)!r} returned {type(out).__name__}: {out!r}."
            )
        return {str(k): float(v) for k, v in out.items()}

    def describe(self) -> str:
        fn = self._callable()
        return f"function {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
