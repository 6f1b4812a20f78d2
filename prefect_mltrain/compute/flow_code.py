"""The flow's own code on the warm workers, as a LocalCluster started by the flow would see it.

A LocalCluster's workers are children of the flow: they import the user's modules from the
flow's `sys.path` and open relative paths from its working directory. The warm workers
outlive flows, so each flow that connects hands them its code paths and working directory
(a Dask worker plugin, re-applied to workers that start later), and they forget the user
modules an earlier flow imported, so an edited module is imported afresh, not served stale.

Installed packages (this package included) stay imported: they are what the workers preload.
"""

from __future__ import annotations

import importlib
import os
import site
import sys
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: Modules never forgotten, wherever they were imported from (an editable install of this package).
_KEPT_PREFIXES = ("prefect_mltrain", "__main__", "__mp_main__")


def _installation_dirs() -> tuple[str, ...]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _inside(path: str, folders: tuple[str, ...]) -> bool:
    return any(path.startswith(folder) for folder in folders)


def user_code_paths(path: list[str] | None = None, cwd: str | None = None) -> list[str]:
    """This process's import paths outside the Python installation (its own code), in order.

    >>> user_code_paths(["", sys.prefix, "/no/such/dir"], cwd="/tmp")
    ['/tmp']
    """
    cwd = cwd or os.getcwd()
    installed = _installation_dirs()
    out: list[str] = []
    for entry in sys.path if path is None else path:
        folder = os.path.realpath(entry or cwd)
        if os.path.isdir(folder) and not _inside(os.path.join(folder, ""), installed) and folder not in out:
            out.append(folder)
    return out


def adopt_flow_code(paths: list[str], cwd: str) -> list[str]:
    """In a worker: import from `paths` first, work in `cwd`, forget user modules; return those forgotten."""
    for folder in reversed(paths):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    roots = tuple(os.path.join(p, "") for p in paths)
    installed = _installation_dirs()
    forgotten = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not os.path.isabs(file) or name.startswith(_KEPT_PREFIXES):
            continue  # a relative `__file__` (torch.ops' is "_ops.py") names no file of the flow's
        real = os.path.realpath(file)
        if _inside(real, roots) and not _inside(real, installed):
            del sys.modules[name]
            forgotten.append(name)
    importlib.invalidate_caches()
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return forgotten


class FlowCode(WorkerPlugin):
    """A Dask worker plugin that adopts a flow's code paths and working directory.

    Registered under one name, so the latest flow's replaces the one before, and workers that
    start later (a nanny's replacement for a killed worker) adopt it too.
    """

    name = "prefect-mltrain-flow-code"

    def __init__(self, paths: list[str], cwd: str) -> None:
        self.paths, self.cwd = paths, cwd

    def setup(self, worker: Any) -> None:
        adopt_flow_code(self.paths, self.cwd)
