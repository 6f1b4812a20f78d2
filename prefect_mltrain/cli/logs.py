"""Prefect's terminal log without tracebacks, for `job run` without `--debug`.

A failing job would otherwise print the same traceback once per flow run it nests (the job
file's, then `train_job`'s or the sweep's), and once per failing sweep trial from the Dask
worker that ran it, before the one `error:` line says what failed. The flow runs' logs in the
Prefect UI keep their tracebacks: only the console handler's formatter changes.

Prefect reads its logging config once per process, from `PREFECT_LOGGING_SETTINGS_PATH`; the
local Dask workers a job starts inherit this process's environment, so pointing that variable
at a copy of Prefect's own config, before Prefect is imported, covers them all.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.files import write_atomically

_VARIABLE = "PREFECT_LOGGING_SETTINGS_PATH"


class WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` does, leaving out the traceback (other handlers still get it)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text:
            record = copy.copy(record)  # the record itself goes on to Prefect's API log unchanged
            record.exc_info, record.exc_text = None, None
        return self.inner.format(record)


def prefect_formatter_without_traceback(**options: Any) -> logging.Formatter:
    """Prefect's console formatter (`PrefectFormatter(**options)`), without tracebacks."""
    from prefect.logging.formatters import PrefectFormatter

    return WithoutTraceback(PrefectFormatter(**options))


def console_without_tracebacks() -> None:
    """Make Prefect's console log leave tracebacks out, here and in the local Dask workers started later.

    Call it before Prefect is imported. A `PREFECT_LOGGING_SETTINGS_PATH` of the user's own is kept.
    """
    if os.environ.get(_VARIABLE):
        return
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        return
    text = (Path(next(iter(spec.submodule_search_locations))) / "logging" / "logging.yml").read_text()
    theirs = "(): prefect.logging.formatters.PrefectFormatter"  # the `standard` formatter, the console's
    if text.count(theirs) != 1:
        return  # another Prefect release's config: leave it as it is
    path = MltrainSettings().home_dir / "logging" / "console-without-tracebacks.yml"
    write_atomically(path, text.replace(theirs, f"(): {__name__}.{prefect_formatter_without_traceback.__name__}"))
    os.environ[_VARIABLE] = str(path)
