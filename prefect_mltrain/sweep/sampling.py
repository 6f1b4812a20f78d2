"""Sampling algorithms: which configuration to try next, as Optuna samplers driven by ask/tell.

Each algorithm is a small object that checks the search space it is given (e.g. a grid needs
discrete distributions) and builds the Optuna sampler. Pass an `optuna.samplers.BaseSampler`
instead of a name to plug in any other Optuna sampler.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep._optuna import import_optuna
from prefect_mltrain.sweep.space import SearchSpace


@dataclass
class SamplingAlgorithm(ABC):
    """Decides what to try. `seed` makes the sequence of configurations reproducible."""

    seed: int | None = None
    name: ClassVar[str]
    #: Whether the algorithm learns from finished trials (early termination may mislead it).
    adaptive: ClassVar[bool] = False

    def check(self, space: SearchSpace) -> None:
        """Raise `ConfigurationError` when the algorithm cannot sample `space`."""

    def size(self, space: SearchSpace) -> float:
        """How many distinct configurations the algorithm can produce (inf when unbounded)."""
        return math.inf

    @abstractmethod
    def sampler(self, space: SearchSpace) -> Any:
        """The Optuna sampler."""


@dataclass
class RandomSampling(SamplingAlgorithm):
    """Independent random draws; with a `seed` the same sweep draws the same configurations."""

    name: ClassVar[str] = "random"

    def sampler(self, space: SearchSpace) -> Any:
        return import_optuna().samplers.RandomSampler(seed=self.seed)


@dataclass
class GridSampling(SamplingAlgorithm):
    """Every combination of the listed values, once each, in a (seeded) shuffled order."""

    name: ClassVar[str] = "grid"

    def check(self, space: SearchSpace) -> None:
        continuous = {n: d.type for n, d in space.distributions.items() if not d.discrete}
        if continuous:
            raise ConfigurationError(
                f"`sampling_algorithm`='grid' needs distributions whose values can be listed "
                f"(choice, randint), but got {continuous}. Fix: write those as "
                f"choice(values=[...]), or use 'random', 'sobol' or 'bayesian'."
            )

    def size(self, space: SearchSpace) -> float:
        return float(math.prod(len(d.grid_values()) for d in space.distributions.values()))

    def sampler(self, space: SearchSpace) -> Any:
        grid = {name: d.grid_values() for name, d in space.distributions.items()}
        return import_optuna().samplers.GridSampler(grid, seed=self.seed)


@dataclass
class BayesianSampling(SamplingAlgorithm):
    """Tree-structured Parzen Estimator (Optuna's TPE): models good vs bad finished trials."""

    n_startup_trials: int = 5
    name: ClassVar[str] = "bayesian"
    adaptive: ClassVar[bool] = True

    def sampler(self, space: SearchSpace) -> Any:
        # `constant_liar` keeps concurrent trials from being proposed the same point.
        return import_optuna().samplers.TPESampler(
            seed=self.seed, n_startup_trials=self.n_startup_trials, constant_liar=True
        )


@dataclass
class SobolSampling(SamplingAlgorithm):
    """A scrambled Sobol sequence: quasi-random points that cover the space evenly."""

    name: ClassVar[str] = "sobol"

    def sampler(self, space: SearchSpace) -> Any:
        import warnings

        optuna = import_optuna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=0 if self.seed is None else self.seed,
                warn_independent_sampling=False,
            )


ALGORITHMS: dict[str, type[SamplingAlgorithm]] = {
    cls.name: cls for cls in (GridSampling, RandomSampling, BayesianSampling, SobolSampling)
}


def sampling_algorithm(value: str | SamplingAlgorithm | Any, seed: int | None = None) -> SamplingAlgorithm | Any:
    """Resolve `sampling_algorithm`: a name, a `SamplingAlgorithm`, or an Optuna sampler.

    Raises:
        ConfigurationError: Unknown name; the valid ones are listed.
    """
    if isinstance(value, SamplingAlgorithm):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in ALGORITHMS:
            raise ConfigurationError(
                f"`sampling_algorithm`={value!r} is not a known algorithm. Valid: {sorted(ALGORITHMS)}, "
                f"or an optuna.samplers.BaseSampler instance."
            )
        return ALGORITHMS[key](seed=seed)
    try:
        base = import_optuna().samplers.BaseSampler
    except ImportError:  # pragma: no cover - import_optuna raises its own error
        base = ()
    if isinstance(value, base):
        return value
    raise ConfigurationError(
        f"`sampling_algorithm` must be one of {sorted(ALGORITHMS)}, a SamplingAlgorithm or an "
        f"optuna sampler, but got {type(value).__name__}: {value!r}."
    )
