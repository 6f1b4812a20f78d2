"""What is wrong in a job file, and where it is written.

`Findings` collects every problem of one file (`Problem`: a key path and what is wrong) and the
line each key is written on (`key_lines`), so that `JobFileError` shows one
`job.yml:12: `inputs.data.path`: ...` line per problem and a user fixes them all in one round.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prefect_mltrain.errors import ComputeError, ConfigurationError, MissingDependencyError


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a job file: where (a key path such as `inputs.data.path`) and what."""

    where: str
    message: str


class JobFileError(ConfigurationError):
    """A job file that does not parse or does not follow the schema; `problems` holds every one.

    Its text is one `<file>:<line>: `<key>`: <what is wrong, the value, the fix>` line per problem.
    """

    def __init__(
        self, path: str | Path, problems: list[Problem] | str, locations: Mapping[str, str] | None = None
    ) -> None:
        self.path = Path(path)
        self.problems = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        self.locations = dict(locations or {})
        super().__init__("\n".join(self.lines()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt with all its arguments when it crosses a process boundary (pickle).
        return (type(self), (self.path, self.problems, self.locations))

    @property
    def shown_path(self) -> str:
        """The file as a user would type it: relative to the working directory when under it."""
        return _shown(self.path)

    def lines(self) -> list[str]:
        """One line per problem, in the file's order: the file, the line (or the `--set` that
        gave the value), the key, what is wrong."""
        located = [
            (_line_of(self.locations, p.where), _located(self.shown_path, self.locations, p)) for p in self.problems
        ]
        return [text for _, text in sorted(located, key=lambda item: item[0])]


def _shown(path: Path) -> str:
    """`path` as a user would type it: relative to the working directory when under it."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _location(locations: Mapping[str, str], where: str) -> str:
    """Where the longest written prefix of key path `where` is: a line number, a `--set`, or ''."""
    parts = where.split(".") if where else []
    for end in range(len(parts), 0, -1):
        location = locations.get(".".join(parts[:end]), "")
        if location:
            return location
    return ""


def _line_of(locations: Mapping[str, str], where: str) -> int:
    """The line of `where`, for sorting: problems of the whole file first, `--set` values last."""
    location = _location(locations, where)
    return int(location) if location.isdigit() else 0 if not location else 1 << 30


def _located(file: str, locations: Mapping[str, str], problem: Problem) -> str:
    """`file:12: `key`: message`, with the line of the longest written prefix of the key.

    >>> _located("job.yml", {"inputs": "4", "inputs.data": "5"}, Problem("inputs.data.path", "is missing."))
    'job.yml:5: `inputs.data.path`: is missing.'
    >>> _located("job.yml", {"inputs.lr": "--set inputs.lr=x"}, Problem("inputs.lr", "must be a number."))
    'job.yml (--set inputs.lr=x): `inputs.lr`: must be a number.'
    """
    where = problem.where
    location = _location(locations, where)
    head = file if not location else f"{file}:{location}" if location.isdigit() else f"{file} ({location})"
    return f"{head}: `{where}`: {problem.message}" if where else f"{head}: {problem.message}"


def key_lines(text: str) -> dict[str, str]:
    """The line each key of a YAML document is written on, by dotted key path.

    >>> key_lines("inputs:\\n  data:\\n    path: d.csv\\n")
    {'inputs': '1', 'inputs.data': '2', 'inputs.data.path': '3'}
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    found: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    path = f"{prefix}.{key.value}" if prefix else str(key.value)
                    found.setdefault(path, str(key.start_mark.line + 1))
                    walk(value, path)

    walk(root, "")
    return found


def _narrowed(where: str, message: str) -> str:
    """`where`, made precise by the key a message names first, e.g. `distribution.type`.

    >>> _narrowed("trial.distribution", "`distribution.type` must be one of ['pytorch', 'mpi'], but got 'x'.")
    'trial.distribution.type'
    >>> _narrowed("objective", "`goal` must be one of ['maximize', 'minimize'].")
    'objective'
    """
    named = re.match(r"`([\w.]+)`", message)
    tail = where.rsplit(".", 1)[-1]
    if where and named and named.group(1).startswith(tail + "."):
        return where[: len(where) - len(tail)] + named.group(1)
    return where


class Findings:
    """The problems found in one job file so far, and where each key of it is written."""

    def __init__(self, path: Path, locations: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.locations = dict(locations or {})
        self.problems: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        """Record a problem at key path `where`; one already recorded there is not repeated."""
        if Problem(where, message) not in self.problems:
            self.problems.append(Problem(where, message))

    @contextmanager
    def checking(self, where: str) -> Iterator[None]:
        """Record the `ConfigurationError` (or missing extra, unreachable compute) raised in the block, and go on."""
        try:
            yield
        except (ConfigurationError, MissingDependencyError, ComputeError) as exc:
            if isinstance(exc, JobFileError):
                self.problems.extend(p for p in exc.problems if p not in self.problems)
            else:
                self.add(_narrowed(where, str(exc)), str(exc))

    def at(self, *prefixes: str) -> bool:
        """Whether a problem was recorded at one of `prefixes` or under it."""
        return any(p.where == k or p.where.startswith(k + ".") for p in self.problems for k in prefixes)

    def error(self) -> JobFileError:
        """Every problem as one error."""
        return JobFileError(self.path, self.problems, self.locations)

    def raise_if_any(self) -> None:
        """Raise `JobFileError` with every problem, if there is one."""
        if self.problems:
            raise self.error()


def unknown_keys(doc: Mapping[str, Any], valid: set[str], prefix: str, what: str, findings: Findings) -> None:
    """One problem per unknown key, with the valid key it most resembles."""
    for key in sorted(set(doc) - valid, key=str):
        close = difflib.get_close_matches(str(key), sorted(valid), n=1)
        hint = f"Did you mean `{close[0]}`?" if close else f"Valid keys: {sorted(valid)}."
        findings.add(f"{prefix}.{key}" if prefix else str(key), f"unknown key for {what}. {hint}")
