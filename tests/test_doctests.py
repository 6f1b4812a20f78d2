"""Every docstring example in the package runs (`>>>` lines), module by module."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "prefect_mltrain": ROOT / "prefect_mltrain",
    "prefect_mltrain.flows": ROOT / "flows",
    "prefect_mltrain.tasks": ROOT / "tasks",
    "prefect_mltrain.blocks": ROOT / "blocks",
}


def _with_examples() -> list[str]:
    names = []
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            if ">>> " not in path.read_text() or "bootstrap" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            names.append(".".join([package, *(p for p in parts if p != "__init__")]))
    return names


MODULES = _with_examples()


def test_examples_are_found():
    assert len(MODULES) >= 15, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output above)"
