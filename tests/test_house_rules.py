"""House rules of issue 14: no module over 400 lines, no function over 80 lines of code.

A function's code is its lines from `def` to its last line, the docstring left out (the
signature counts). A longer one is allowed with a reason: a `# long: <reason>` comment on its
`def` line, on one of its decorators, or on the line just above them. The rule that private
Prefect/Optuna APIs are used only in `prefect_mltrain/_compat/` is `tests/test_compat.py`'s.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("prefect_mltrain", "flows", "tasks", "blocks")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from `def` to the end, less the docstring's."""
    assert node.end_lineno is not None
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        assert first.end_lineno is not None
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _has_reason(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """A `# long: <reason>` comment on the def line, a decorator, or the line above them."""
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return any("# long:" in lines[i - 1] for i in range(max(top - 1, 1), node.lineno + 1))


def long_modules() -> list[str]:
    found = []
    for path in _sources():
        count = len(path.read_text().splitlines())
        if count > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {count} lines")
    return found


def long_functions() -> list[str]:
    found = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            count = _code_lines(node)
            if count > MAX_FUNCTION_LINES and not _has_reason(node, lines):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} has {count} lines of code")
    return found


def test_no_module_over_400_lines():
    found = long_modules()
    assert not found, "Split these modules by concept (issue 14):\n" + "\n".join(found)


def test_no_function_over_80_lines_without_a_reason():
    found = long_functions()
    assert not found, (
        "Extract well-named helpers, or give the reason in a `# long: <reason>` comment on the def line "
        "or the line above (issue 14):\n" + "\n".join(found)
    )


def test_the_rules_see_a_long_function_and_its_reason():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f'def f():\n    """Doc\n\n    lines.\n    """\n{body}\n'
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _code_lines(node) == MAX_FUNCTION_LINES + 1
    assert not _has_reason(node, source.splitlines())
    reasoned = "# long: a table of cases\n@decorator\n" + source
    node = ast.parse(reasoned).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _has_reason(node, reasoned.splitlines())
