"""Search spaces: a validated mapping of hyperparameter names to distributions.

`SearchSpace.parse` takes the distributions themselves (`prefect_mltrain.sweep.distributions`)
or their dict form as written in Azure ML's YAML (`distribution_from_dict`), and checks every
name. The distributions and their lowercase constructors are importable from here as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.distributions import (
    DISTRIBUTIONS,
    Choice,
    Distribution,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    Uniform,
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "DISTRIBUTIONS",
    "Choice",
    "Distribution",
    "LogNormal",
    "LogUniform",
    "Normal",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "Randint",
    "SearchSpace",
    "Uniform",
    "choice",
    "distribution_from_dict",
    "lognormal",
    "loguniform",
    "normal",
    "qlognormal",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "uniform",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def distribution_from_dict(name: str, spec: Mapping[str, Any]) -> Distribution:
    """Build a distribution from its Azure YAML form, e.g. `{"type": "uniform", "min_value": 0, "max_value": 1}`.

    `loguniform`/`qloguniform` also take `low`/`high`, the value bounds (positive).

    Raises:
        ConfigurationError: Unknown type (the valid ones are listed) or bad arguments.
    """
    where = f"search_space[{name!r}]"
    if not isinstance(spec, Mapping):
        raise ConfigurationError(
            f"{where} must be a distribution or a dict with a `type`, but got {spec!r}. Fix: e.g. "
            f"{{'type': 'choice', 'values': [{spec!r}]}}."
        )
    kind = spec.get("type")
    if kind not in DISTRIBUTIONS:
        raise ConfigurationError(f"{where}: unknown distribution type {kind!r}. Valid types: {sorted(DISTRIBUTIONS)}.")
    cls = DISTRIBUTIONS[kind]
    args = {k: v for k, v in spec.items() if k != "type"}
    try:
        if issubclass(cls, LogUniform) and ("low" in args or "high" in args):
            return cls.between(args.pop("low", None), args.pop("high", None), **args)  # type: ignore[arg-type]
        return cls(**args)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    except TypeError as exc:
        fields = [f for f in cls.__dataclass_fields__ if f != "type"]  # type: ignore[attr-defined]
        raise ConfigurationError(
            f"{where}: `{kind}` takes {fields}, but got {sorted(args)} ({exc}). Fix: use those names."
        ) from None


@dataclass
class SearchSpace:
    """A validated mapping of hyperparameter names to distributions."""

    distributions: dict[str, Distribution] = field(default_factory=dict)

    @classmethod
    def parse(cls, space: Mapping[str, Distribution | Mapping[str, Any]] | SearchSpace) -> SearchSpace:
        """Validate `space`, given as distributions or their dict (Azure YAML) form.

        >>> SearchSpace.parse({"lr": {"type": "uniform", "min_value": 0, "max_value": 1}}).to_dict()
        {'lr': {'type': 'uniform', 'min_value': 0.0, 'max_value': 1.0}}

        Raises:
            ConfigurationError: The space is empty, a name is bad, or a distribution is invalid.
        """
        if isinstance(space, SearchSpace):
            return space
        if not isinstance(space, Mapping) or not space:
            raise ConfigurationError(
                f"`search_space` must be a non-empty dict of hyperparameter name to distribution, "
                f"but got {space!r}. Fix: e.g. {{'C': loguniform(-3, 2), 'kernel': choice(['rbf', 'linear'])}}."
            )
        parsed: dict[str, Distribution] = {}
        for name, spec in space.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigurationError(
                    f"`search_space` names must be identifiers (letters, digits, _ . -), but got "
                    f"{name!r}. Fix: rename it, e.g. {re.sub(r'[^A-Za-z0-9_]+', '_', str(name))!r}."
                )
            parsed[name] = spec if isinstance(spec, Distribution) else distribution_from_dict(name, spec)
        return cls(parsed)

    def internal(self) -> dict[str, BaseDistribution]:
        """The Optuna distributions, for `study.ask(fixed_distributions=...)`."""
        return {name: d.internal() for name, d in self.distributions.items()}

    def values(self, drawn: Mapping[str, Any]) -> dict[str, Any]:
        """Hyperparameter values for the drawn internal values of one trial."""
        return {name: d.value(drawn[name]) for name, d in self.distributions.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The space in its JSON-able (Azure YAML) form."""
        return {name: d.to_dict() for name, d in self.distributions.items()}

    def __iter__(self) -> Any:
        return iter(self.distributions)

    def __len__(self) -> int:
        return len(self.distributions)
