"""The import contract: packages by concept, imports pointing down only (ARCHITECTURE.md).

Each line of `LAYERS` may import the lines below it, never a line above; packages that share a
line are independent of each other. Every import counts, at module level or inside a function,
except those under `if TYPE_CHECKING:` (annotations only). `errors` and `settings` sit under
everything and import nothing of the package.
"""

from __future__ import annotations

import ast
import re
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


# ARCHITECTURE.md matches the tree: every module it names exists, and every module of the package
# is named there (`__init__.py` and `__main__.py` need not be).
DOC = ROOT / "ARCHITECTURE.md"


def _tree() -> dict[str, Path]:
    """Every module by the path the document names it with: `jobs/snapshot.py`, `flows/sweep.py`, `errors.py`."""
    return {p.relative_to(ROOT).as_posix().removeprefix("prefect_mltrain/"): p for p in _modules().values()}


def _named_paths(text: str, packages: set[str]) -> set[str]:
    """The `.py` paths the document names, as `_tree` keys: each table row's modules under its
    package (`| ... | `jobs/` | `snapshot.py` ... |`; a path of another package, `blocks/compute.py`,
    as written), and every path with a package folder written out elsewhere (`flows/train_job.py`)."""
    named = set()
    for line in text.splitlines():
        cells = line.split("|")
        row = re.fullmatch(r"\s*`([\w/]+)/`\s*", cells[2]) if line.startswith("|") and len(cells) > 4 else None
        if row:
            folder = row.group(1).removeprefix("prefect_mltrain").strip("/")
            for module in re.findall(r"`([\w/]+\.py)`", cells[3]):
                inside = f"{folder}/{module}".lstrip("/")
                named.add(inside if folder and module.split("/")[0] not in packages else module)
        elif not line.startswith("|"):
            named.update(
                m for m in re.findall(r"`(?:prefect_mltrain/)?([\w/]+/\w+\.py)`", line) if m.split("/")[0] in packages
            )
    return named


def _dotted(text: str, packages: set[str]) -> list[list[str]]:
    """Dotted names that start with a package: `jobs.snapshot`, `sweep.plan.plan_sweep`, `tasks.run_command`."""
    found = re.findall(r"`(?:prefect_mltrain\.)?([a-z_]+(?:\.[A-Za-z_]+)+)", text)
    return [d.split(".") for d in found if d.split(".")[0] in packages and not d.endswith(".py")]


def test_architecture_names_only_modules_that_exist():
    text, tree = DOC.read_text(), _tree()
    packages = {key.split("/")[0] for key in tree if "/" in key}
    missing = sorted(p for p in _named_paths(text, packages) if p not in tree)
    for parts in _dotted(text, packages):
        package, name = parts[0], parts[1]
        init = tree[f"{package}/__init__.py"].read_text()
        if f"{package}/{name}.py" not in tree and f"{package}/{name}/__init__.py" not in tree and name not in init:
            missing.append(".".join(parts))
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"


def test_architecture_names_every_module():
    text, tree = DOC.read_text(), _tree()
    packages = {key.split("/")[0] for key in tree if "/" in key}
    named = _named_paths(text, packages)
    for parts in _dotted(text, packages):  # the longest prefix that is a module
        named.update(p for p in ("/".join(parts[:end]) + ".py" for end in range(2, len(parts) + 1)) if p in tree)
    unnamed = sorted(p for p in set(tree) - named if Path(p).name not in ("__init__.py", "__main__.py"))
    assert not unnamed, f"Modules that ARCHITECTURE.md does not name (add each where it belongs): {unnamed}"
