"""Sampling algorithms over Optuna: grid rules, seeded reproducibility, every algorithm samples."""

from __future__ import annotations

import pytest

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.sampling import ALGORITHMS, GridSampling, RandomSampling, sampling_algorithm
from prefect_mltrain.sweep.space import SearchSpace, choice, normal, randint, uniform

pytestmark = pytest.mark.unit


def _draw(algorithm, space, n, worker=0):
    import optuna

    study = optuna.create_study(sampler=algorithm.sampler(space, worker))
    out = []
    for _ in range(n):
        t = study.ask(space.internal())
        out.append(space.values(t.params))
        study.tell(t, 0.0)
    return out


def test_unknown_algorithm_lists_valid_ones():
    with pytest.raises(ConfigurationError) as info:
        sampling_algorithm("hyperopt")
    assert "'hyperopt'" in str(info.value) and str(sorted(ALGORITHMS)) in str(info.value)


def test_grid_over_continuous_distribution_is_refused():
    space = SearchSpace.parse({"x": uniform(0, 1), "k": choice(["a", "b"])})
    with pytest.raises(ConfigurationError) as info:
        GridSampling().check(space)
    assert "{'x': 'uniform'}" in str(info.value) and "choice(values=[...])" in str(info.value)


def test_grid_enumerates_every_point_once():
    space = SearchSpace.parse({"k": choice(["a", "b"]), "n": randint(3)})
    grid = GridSampling(seed=0)
    assert grid.size(space) == 6
    drawn = _draw(grid, space, 6)
    assert sorted((d["k"], d["n"]) for d in drawn) == sorted((k, n) for k in "ab" for n in range(3))


def test_random_is_reproducible_per_trial_whichever_process_asks():
    space = SearchSpace.parse({"x": uniform(0, 1), "y": normal(0, 1)})
    a = _draw(RandomSampling(seed=7), space, 4, worker=0)
    b = _draw(RandomSampling(seed=7), space, 4, worker=1)
    c = _draw(RandomSampling(seed=8), space, 4)
    assert a == b
    assert a != c
    assert len({d["x"] for d in a}) == 4


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"grid"}))
def test_every_algorithm_samples_every_family(name):
    space = SearchSpace.parse(
        {
            "c": choice([1, 2]),
            "r": randint(5),
            "u": uniform(0, 1),
            "q": {"type": "quniform", "min_value": 0, "max_value": 10, "q": 2},
            "lu": {"type": "loguniform", "low": 1e-3, "high": 1},
            "n": normal(0, 1),
            "ln": {"type": "qlognormal", "mu": 0, "sigma": 1, "q": 1},
        }
    )
    drawn = _draw(sampling_algorithm(name, seed=1), space, 6)
    for d in drawn:
        assert d["c"] in (1, 2) and 0 <= d["r"] < 5 and 0 <= d["u"] <= 1 and d["q"] % 2 == 0
        assert 1e-3 <= d["lu"] <= 1 and d["ln"] >= 0


def test_an_optuna_sampler_instance_is_accepted():
    import optuna

    sampler = optuna.samplers.RandomSampler(seed=0)
    assert sampling_algorithm(sampler) is sampler
