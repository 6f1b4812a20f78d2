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
from prefect_mltrain.sweep.journal import import_optuna
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
    def sampler(self, space: SearchSpace, worker: int = 0) -> Any:
        """The Optuna sampler of one asking process.

        Trials are asked by several processes at once (one per concurrent trial slot), each
        with its own sampler over the shared study; `worker` tells them apart so that seeded
        samplers do not all draw the same sequence.
        """


def _mix(seed: int | None, *parts: int) -> int | None:
    """A 32-bit seed derived from `seed` and `parts` (None stays None).

    >>> _mix(1, 2) == _mix(1, 2) != _mix(1, 3)
    True
    """
    if seed is None:
        return None
    value = seed & 0xFFFFFFFF
    for part in parts:
        value = (value * 1_000_003 + part + 0x9E3779B9) & 0xFFFFFFFF
    return value


@dataclass
class RandomSampling(SamplingAlgorithm):
    """Independent random draws; with a `seed` the same sweep draws the same configurations."""

    name: ClassVar[str] = "random"

    def sampler(self, space: SearchSpace, worker: int = 0) -> Any:
        optuna = import_optuna()
        if self.seed is None:
            return optuna.samplers.RandomSampler()
        seed = self.seed

        class TrialSeededRandomSampler(optuna.samplers.RandomSampler):  # type: ignore[misc,name-defined]
            """Seeds each trial from (seed, trial number): reproducible whichever process asks."""

            def sample_independent(self, study: Any, trial: Any, param_name: str, dist: Any) -> Any:
                names = sorted(space.distributions)
                index = names.index(param_name) if param_name in names else len(names)
                return optuna.samplers.RandomSampler(seed=_mix(seed, trial.number, index)).sample_independent(
                    study, trial, param_name, dist
                )

        return TrialSeededRandomSampler()


@dataclass
class GridSampling(SamplingAlgorithm):
    """Every combination of the listed values, once each, in a (seeded) shuffled order.

    The sampler skips grid points already taken in the study, so concurrent askers share one grid.
    """

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

    def sampler(self, space: SearchSpace, worker: int = 0) -> Any:
        optuna = import_optuna()
        grid = {name: d.grid_values() for name, d in space.distributions.items()}

        class AskTellGridSampler(optuna.samplers.GridSampler):  # type: ignore[misc,name-defined]
            """GridSampler without `study.stop()` on exhaustion, which only works inside
            `study.optimize`; the sweep stops by itself after `size()` trials."""

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        return AskTellGridSampler(grid, seed=self.seed)


@dataclass
class BayesianSampling(SamplingAlgorithm):
    """Tree-structured Parzen Estimator (Optuna's TPE): models good vs bad finished trials."""

    n_startup_trials: int = 5
    name: ClassVar[str] = "bayesian"
    adaptive: ClassVar[bool] = True

    def sampler(self, space: SearchSpace, worker: int = 0) -> Any:
        # `constant_liar` keeps concurrent trials from being proposed the same point. Each
        # asking process gets its own seed, so a seeded sweep is reproducible for a fixed
        # `max_concurrent_trials` only as far as trial timing allows (as in Optuna).
        return import_optuna().samplers.TPESampler(
            seed=_mix(self.seed, worker), n_startup_trials=self.n_startup_trials, constant_liar=True
        )


@dataclass
class SobolSampling(SamplingAlgorithm):
    """A scrambled Sobol sequence: quasi-random points that cover the space evenly.

    The sequence position is kept in the study, so concurrent askers continue one sequence.
    """

    name: ClassVar[str] = "sobol"

    def sampler(self, space: SearchSpace, worker: int = 0) -> Any:
        import warnings

        optuna = import_optuna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=0 if self.seed is None else self.seed,
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
