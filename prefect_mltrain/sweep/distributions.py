"""Azure ML's hyperparameter distributions as self-validating objects (`space.py` parses spaces).

A search space is data, a `dict[str, Distribution]`. Each distribution checks its own
arguments when it is built and knows two things about sampling:

- `internal()`: the Optuna distribution the sampler draws from, and
- `value(x)`: the hyperparameter value handed to the trial for a drawn `x`.

Most families are drawn directly (`choice`, `randint`, `uniform`, `loguniform`). The rest are
mapped onto a distribution Optuna samplers know, so every sampler (grid, random, TPE, Sobol)
works on every family:

- `quniform`, `qloguniform`: drawn continuously, then rounded to a multiple of `q`
  (Azure's `round(x / q) * q`), so TPE still models a continuous axis.
- `normal`, `lognormal` and their `q` variants: a quantile `u` is drawn uniformly from
  (0, 1) and turned into a value with the normal inverse CDF, `mu + sigma * Phi^-1(u)`
  (then `exp` for lognormal). Uniform `u` gives exactly normal values, so random and Sobol
  sampling keep the distribution, and TPE models the quantile axis. The tails are clipped at
  `u` in [1e-6, 1 - 1e-6], i.e. at about 4.75 sigma.

As in Azure ML, `loguniform(min_value, max_value)` gives `exp(uniform(min_value, max_value))`:
the bounds are natural-log exponents. Give `low`/`high` instead to state the value bounds
themselves (they must be positive), e.g. `LogUniform.between(1e-4, 1e-1)`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, ClassVar

from prefect_mltrain.errors import ConfigurationError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

_QUANTILE_EPS = 1e-6


def _optuna() -> Any:
    from prefect_mltrain.sweep.journal import import_optuna

    return import_optuna()


def _finite(name: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{where}: `{name}` must be a finite number, but got {name}={value!r}.")
    return float(value)


def _quantize(value: float, q: float | None) -> float:
    if q is None:
        return value
    rounded = round(value / q) * q
    # Keep integers integers (q=1 -> 3, not 3.0000000004) and trim float noise.
    return float(round(rounded, 12)) if not float(q).is_integer() else float(round(rounded))


class Distribution(ABC):
    """A hyperparameter distribution. Subclasses validate their arguments on construction."""

    type: ClassVar[str]
    #: Whether a grid can enumerate the distribution's values.
    discrete: ClassVar[bool] = False

    @abstractmethod
    def internal(self) -> BaseDistribution:
        """The Optuna distribution the sampler draws from."""

    def value(self, drawn: Any) -> Any:
        """The hyperparameter value for a drawn internal value `drawn`."""
        return drawn

    def grid_values(self) -> list[Any]:
        """Internal values a grid enumerates; only for discrete distributions."""
        raise ConfigurationError(f"`{self.type}` cannot be enumerated by a grid.")

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The distribution as a JSON-able dict (the Azure YAML form)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Distribution) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))


@dataclass(eq=False, repr=False)
class Choice(Distribution):
    """One of a list of values (`choice(values=[...])`).

    >>> Choice([16, 32, 64]).value(32)
    32
    """

    values: Sequence[Any]
    type: ClassVar[str] = "choice"
    discrete: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, Sequence):
            raise ConfigurationError(
                f"choice: `values` must be a list, but got values={self.values!r}. "
                f"Fix: write choice(values=[{self.values!r}])."
            )
        self.values = list(self.values)
        if not self.values:
            raise ConfigurationError(
                "choice: `values` must not be empty, but got values=[]. Fix: list at least one value."
            )
        for v in self.values:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise ConfigurationError(
                    f"choice: every value must be None, a bool, number or string (they are stored "
                    f"and shown in the UI), but got {v!r} of type {type(v).__name__}. Fix: pass a "
                    f"name and build the object from it in the trial."
                )
        if len({repr(v) for v in self.values}) != len(self.values):
            raise ConfigurationError(f"choice: `values` has duplicates: {self.values!r}. Fix: list each once.")

    def internal(self) -> BaseDistribution:
        return _optuna().distributions.CategoricalDistribution(self.values)

    def grid_values(self) -> list[Any]:
        return list(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "values": list(self.values)}


@dataclass(eq=False, repr=False)
class Randint(Distribution):
    """An integer in [0, upper) (`randint(upper=...)`).

    >>> Randint(3).grid_values()
    [0, 1, 2]
    """

    upper: int
    type: ClassVar[str] = "randint"
    discrete: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.upper, bool) or not isinstance(self.upper, int) or self.upper < 1:
            raise ConfigurationError(
                f"randint: `upper` must be an integer >= 1 (values are drawn from [0, upper)), "
                f"but got upper={self.upper!r}."
            )

    def internal(self) -> BaseDistribution:
        return _optuna().distributions.IntDistribution(0, self.upper - 1)

    def value(self, drawn: Any) -> Any:
        return int(drawn)

    def grid_values(self) -> list[Any]:
        return list(range(self.upper))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "upper": self.upper}


@dataclass(eq=False, repr=False)
class Uniform(Distribution):
    """A float drawn uniformly from [min_value, max_value]."""

    min_value: float
    max_value: float
    type: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        where = self.type
        self.min_value = _finite("min_value", self.min_value, where)
        self.max_value = _finite("max_value", self.max_value, where)
        if not self.min_value < self.max_value:
            raise ConfigurationError(
                f"{where}: `min_value` < `max_value` must hold, but got min_value={self.min_value!r}, "
                f"max_value={self.max_value!r}. Fix: swap them, or use choice(values=[{self.min_value!r}]) "
                f"for a fixed value."
            )

    def internal(self) -> BaseDistribution:
        return _optuna().distributions.FloatDistribution(self.min_value, self.max_value)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "min_value": self.min_value, "max_value": self.max_value}


def _check_q(where: str, q: Any) -> float:
    q = _finite("q", q, where)
    if q <= 0:
        raise ConfigurationError(f"{where}: `q` must be > 0 (values are round(x / q) * q), but got q={q!r}.")
    return q


class _Quantized:
    """The `q*` distributions: the parent's value rounded to a multiple of `q` (a field of each)."""

    q: float
    type: ClassVar[str]

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        self.q = _check_q(self.type, self.q)

    def value(self, drawn: Any) -> Any:
        return _quantize(float(super().value(drawn)), self.q)  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "q": self.q}  # type: ignore[misc]


@dataclass(eq=False, repr=False)
class QUniform(_Quantized, Uniform):
    """`round(uniform(min_value, max_value) / q) * q`."""

    q: float = 1.0
    type: ClassVar[str] = "quniform"


@dataclass(eq=False, repr=False)
class LogUniform(Uniform):
    """`exp(uniform(min_value, max_value))`: the bounds are natural-log exponents, as in Azure ML.

    >>> d = LogUniform.between(1e-3, 1.0); round(d.min_value, 4), d.max_value
    (-6.9078, 0.0)
    """

    type: ClassVar[str] = "loguniform"

    @classmethod
    def between(cls, low: float, high: float, **kwargs: Any) -> LogUniform:
        """The distribution whose values lie in [low, high]; both must be positive."""
        for name, bound in (("low", low), ("high", high)):
            if _finite(name, bound, cls.type) <= 0:
                raise ConfigurationError(
                    f"{cls.type}: `{name}` must be > 0 (a log scale has no zero or negatives), but "
                    f"got {name}={bound!r}. Fix: use uniform for ranges that include 0, or give "
                    f"exponents as min_value/max_value."
                )
        return cls(min_value=math.log(low), max_value=math.log(high), **kwargs)

    def internal(self) -> BaseDistribution:
        return _optuna().distributions.FloatDistribution(math.exp(self.min_value), math.exp(self.max_value), log=True)


@dataclass(eq=False, repr=False)
class QLogUniform(_Quantized, LogUniform):
    """`round(exp(uniform(min_value, max_value)) / q) * q`."""

    q: float = 1.0
    type: ClassVar[str] = "qloguniform"


@dataclass(eq=False, repr=False)
class Normal(Distribution):
    """A float from the normal distribution with mean `mu` and standard deviation `sigma`.

    Sampled through its quantile: the sampler draws `u` in (0, 1), the trial gets
    `mu + sigma * Phi^-1(u)`.

    >>> Normal(mu=10, sigma=2).value(0.5)
    10.0
    """

    mu: float
    sigma: float
    type: ClassVar[str] = "normal"

    def __post_init__(self) -> None:
        self.mu = _finite("mu", self.mu, self.type)
        self.sigma = _finite("sigma", self.sigma, self.type)
        if self.sigma <= 0:
            raise ConfigurationError(
                f"{self.type}: `sigma` must be > 0, but got sigma={self.sigma!r}. Fix: give the "
                f"standard deviation, or use choice(values=[...]) for a fixed value."
            )

    def internal(self) -> BaseDistribution:
        return _optuna().distributions.FloatDistribution(_QUANTILE_EPS, 1 - _QUANTILE_EPS)

    def value(self, drawn: Any) -> Any:
        u = min(max(float(drawn), _QUANTILE_EPS), 1 - _QUANTILE_EPS)
        return NormalDist(self.mu, self.sigma).inv_cdf(u)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "mu": self.mu, "sigma": self.sigma}


@dataclass(eq=False, repr=False)
class QNormal(_Quantized, Normal):
    """`round(normal(mu, sigma) / q) * q`."""

    q: float = 1.0
    type: ClassVar[str] = "qnormal"


@dataclass(eq=False, repr=False)
class LogNormal(Normal):
    """`exp(normal(mu, sigma))`."""

    type: ClassVar[str] = "lognormal"

    def value(self, drawn: Any) -> Any:
        return math.exp(super().value(drawn))


@dataclass(eq=False, repr=False)
class QLogNormal(_Quantized, LogNormal):
    """`round(exp(normal(mu, sigma)) / q) * q`."""

    q: float = 1.0
    type: ClassVar[str] = "qlognormal"


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.type: cls
    for cls in (Choice, Randint, Uniform, QUniform, LogUniform, QLogUniform, Normal, QNormal, LogNormal, QLogNormal)
}

# Lowercase constructors, as written in Azure ML's Python SDK and YAML.
choice, randint, uniform, quniform = Choice, Randint, Uniform, QUniform
loguniform, qloguniform, normal, qnormal = LogUniform, QLogUniform, Normal, QNormal
lognormal, qlognormal = LogNormal, QLogNormal
