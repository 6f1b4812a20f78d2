"""The import contract: packages by concept, imports pointing down only (ARCHITECTURE.md).

Each line of `LAYERS` may import the lines below it, never a line above; packages that share a
line are independent of each other. Every import counts, at module level or inside a function,
except those under `if TYPE_CHECKING:` (annotations only). `errors` and `settings` sit under
everything and import nothing of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ["cli"],
    ["flows"],
    ["tasks"],
    ["blocks"],
    ["sweep"],
    ["jobs", "estimators", "registry"],
    ["environments", "pytorch"],
    ["tracking", "compute", "server"],
    ["_compat"],
    ["system"],
    ["errors", "settings"],
]
FOLDERS = {
    "prefect_mltrain": ROOT / "prefect_mltrain",
    "prefect_mltrain.flows": ROOT / "flows",
    "prefect_mltrain.tasks": ROOT / "tasks",
    "prefect_mltrain.blocks": ROOT / "blocks",
}
LAYER_OF = {name: i for i, line in enumerate(LAYERS) for name in line}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _component(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "prefect_mltrain" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("prefect_mltrain")]


def violations() -> list[str]:
    problems = []
    for module, path in sorted(_modules().items()):
        mine = _component(module)
        if mine is None or mine not in LAYER_OF:
            if mine is not None:
                problems.append(f"{module}: package {mine!r} is in no layer of tests/test_architecture.py")
            continue
        for line, imported in _imports(path):
            theirs = _component(imported)
            if theirs is None or theirs == mine:
                continue
            if theirs not in LAYER_OF:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {imported}, which is in no layer")
            elif LAYER_OF[theirs] < LAYER_OF[mine]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {imported} (a layer above)")
            elif LAYER_OF[theirs] == LAYER_OF[mine]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {imported} (an independent sibling)")
    return problems


def test_imports_point_down_only():
    problems = violations()
    assert not problems, "Import contract broken:\n" + "\n".join(problems)


def test_the_contract_sees_every_package():
    components = {_component(m) for m in _modules()} - {None}
    assert components == set(LAYER_OF), components ^ set(LAYER_OF)
