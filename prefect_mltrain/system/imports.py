"""Resolve `package.module.name` or `package.module:name` to the object it names."""

from __future__ import annotations

import importlib
from typing import Any


def import_from_path(path: str) -> Any:
    """Import the object at `path`; callers turn the failures into their own clear errors.

    >>> import_from_path("collections.OrderedDict").__name__, import_from_path("os.path:join").__name__
    ('OrderedDict', 'join')

    Raises:
        ImportError: The module does not import.
        AttributeError: The module has no such name.
        ValueError: `path` has no module part.
    """
    module_name, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not name:
        raise ValueError(f"{path!r} is not an import path")
    return getattr(importlib.import_module(module_name), name)
