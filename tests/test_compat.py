"""Every private Prefect/Optuna API the package uses still resolves on the installed releases.

A Prefect or Optuna upgrade that moves one of them fails here, naming the symbol and the compat
module that uses it, instead of a silent fallback or an AttributeError deep inside a sweep.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from prefect_mltrain import _compat

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
# Issue 14's check, `grep -rn "prefect\.\(flow_engine\|server\)\._\|_trial_id"`: it also finds the names in
# strings (`getattr(trial, "_trial_id")`, `monkeypatch.setattr("prefect.flow_engine._...")`).
PRIVATE_TEXT = re.compile(r"prefect\.(flow_engine|server)\._|(?<![A-Za-z0-9])_trial_id\b")


@pytest.mark.parametrize("api", _compat.PRIVATE_APIS, ids=lambda a: a.target)
def test_private_api_resolves(api):
    assert api.resolve() is not None, api.target


def test_nothing_missing():
    assert _compat.missing() == []


def test_every_compat_module_is_listed():
    modules = {p.stem for p in (ROOT / "prefect_mltrain" / "_compat").glob("*.py")} - {"__init__"}
    listed = {a.used_by for a in _compat.PRIVATE_APIS} | {"glibc"}  # glibc: a C library call, no Python symbol
    assert modules == listed


def _private_uses(path: Path) -> list[str]:
    """`x._name` attribute reads on Prefect/Optuna/scikit-learn objects, and private imports, outside _compat."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in ("prefect", "optuna", "sklearn")
        ):
            if any(part.startswith("_") for part in node.module.split(".")) or any(
                a.name.startswith("_") for a in node.names
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
        if isinstance(node, ast.Attribute) and node.attr in (
            "_trial_id",
            "__var__",
            "_send_heartbeats",
            "_validate_params",
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if PRIVATE_TEXT.search(line):
            found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_private_apis_are_used_only_in_compat():
    files = [p for d in ("prefect_mltrain", "flows", "tasks", "blocks") for p in (ROOT / d).rglob("*.py")]
    uses = [u for p in files if "_compat" not in p.parts for u in _private_uses(p)]
    assert uses == []


def test_sklearn_parameter_check_is_scikit_learns_own():
    """The values scikit-learn would refuse in `fit` are refused before it, with its message."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from prefect_mltrain._compat.sklearn_params import parameter_error

    assert parameter_error(RandomForestClassifier(n_estimators=0)) == (
        "The 'n_estimators' parameter of RandomForestClassifier must be an int in the range [1, inf). Got 0 instead."
    )
    assert parameter_error(LogisticRegression(C=0.5, max_iter=500)) is None

    class Custom:  # declares no rules: nothing to check before `fit`
        def fit(self, X, y):
            return self

    assert parameter_error(Custom()) is None
