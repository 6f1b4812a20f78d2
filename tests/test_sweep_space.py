"""Search-space distributions: validation messages, value transforms, dict (YAML) form."""

from __future__ import annotations

import doctest
import sys

import pytest

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep import space as space_module
from prefect_mltrain.sweep.space import (
    DISTRIBUTIONS,
    Choice,
    LogNormal,
    LogUniform,
    Normal,
    QLogNormal,
    QNormal,
    QUniform,
    Randint,
    SearchSpace,
    Uniform,
    distribution_from_dict,
)

pytestmark = pytest.mark.unit


def test_doctests():
    assert doctest.testmod(space_module).failed == 0


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: Choice([]), ["must not be empty", "values=[]"]),
        (lambda: Choice("abc"), ["must be a list"]),
        (lambda: Choice([1, 1]), ["duplicates"]),
        (lambda: Choice([object()]), ["None, a bool, number or string"]),
        (lambda: Randint(0), ["upper", ">= 1", "upper=0"]),
        (lambda: Uniform(1, 1), ["`min_value` < `max_value` must hold", "min_value=1.0", "Fix"]),
        (lambda: Uniform(2, 1), ["min_value=2.0", "max_value=1.0"]),
        (lambda: Uniform(0, float("inf")), ["finite"]),
        (lambda: QUniform(0, 1, q=0), ["`q` must be > 0", "q=0"]),
        (lambda: LogUniform.between(0, 1), ["`low` must be > 0", "low=0", "Fix"]),
        (lambda: LogUniform.between(-1, 1), ["low=-1"]),
        (lambda: Normal(0, 0), ["`sigma` must be > 0", "sigma=0"]),
        (lambda: LogNormal(0, -1), ["sigma=-1"]),
        (lambda: QNormal(0, 1, q=-1), ["q=-1"]),
    ],
)
def test_invalid_distributions_name_rule_and_value(build, words):
    with pytest.raises(ConfigurationError) as info:
        build()
    for word in words:
        assert word in str(info.value)


def test_values_follow_azure_semantics():
    assert Randint(4).value(3) == 3
    assert QUniform(0, 10, q=2).value(4.9) == 4
    assert LogUniform(-1, 1).internal().low == pytest.approx(0.36787944)
    assert LogUniform.between(1e-3, 1).internal().log is True
    assert Normal(10, 2).value(0.5) == 10
    assert Normal(0, 1).value(0.975) == pytest.approx(1.95996, abs=1e-4)
    assert LogNormal(0, 1).value(0.5) == pytest.approx(1.0)
    assert QLogNormal(0, 1, q=0.5).value(0.975) == pytest.approx(7.0)
    assert QNormal(0, 10, q=5).value(0.6) == 5.0
    # extreme quantiles are clipped, not infinite
    assert abs(Normal(0, 1).value(0.0)) < 5


def test_normal_quantile_mapping_keeps_the_distribution():
    import random
    import statistics

    rng = random.Random(0)
    draws = [Normal(5, 2).value(rng.random()) for _ in range(4000)]
    assert statistics.fmean(draws) == pytest.approx(5, abs=0.15)
    assert statistics.stdev(draws) == pytest.approx(2, abs=0.15)


def test_dict_form_and_unknown_type_lists_valid_ones():
    parsed = SearchSpace.parse(
        {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "layers": {"type": "choice", "values": [1, 2, 3]},
            "width": {"type": "qnormal", "mu": 64, "sigma": 16, "q": 8},
        }
    )
    assert parsed.to_dict()["layers"] == {"type": "choice", "values": [1, 2, 3]}
    assert SearchSpace.parse(parsed.to_dict()).to_dict() == parsed.to_dict()
    with pytest.raises(ConfigurationError) as info:
        distribution_from_dict("x", {"type": "gaussian", "mu": 0})
    assert "'gaussian'" in str(info.value) and str(sorted(DISTRIBUTIONS)) in str(info.value)
    with pytest.raises(ConfigurationError, match="takes"):
        distribution_from_dict("x", {"type": "uniform", "low": 0, "high": 1})


@pytest.mark.parametrize("bad", [{}, None, [], {"bad name!": Choice([1])}, {"x": 3}])
def test_empty_or_malformed_space(bad):
    with pytest.raises(ConfigurationError, match="search_space"):
        SearchSpace.parse(bad)


def test_every_family_maps_onto_optuna():
    for name, cls in DISTRIBUTIONS.items():
        args = {"choice": {"values": [1, 2]}, "randint": {"upper": 3}}.get(name) or (
            {"mu": 0, "sigma": 1} if "normal" in name else {"min_value": 0, "max_value": 1}
        )
        dist = cls(**args)
        internal = dist.internal()
        assert internal is not None
        assert dist.to_dict()["type"] == name


def test_import_does_not_load_heavy_libraries():
    import subprocess

    code = (
        "import sys, prefect_mltrain, prefect_mltrain.sweep, prefect_mltrain.flows.sweep; "
        "print([m for m in ('optuna', 'mlflow', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_missing_optuna_gives_install_hint(monkeypatch):
    from prefect_mltrain.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'prefect-mltrain\[sweep\]'"):
        Uniform(0, 1).internal()
