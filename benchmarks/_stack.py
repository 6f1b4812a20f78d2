"""Benchmarks run against a real local Prefect server in a throwaway project home."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect_mltrain.stack import drain_prefect_queues, free_port, start_server, stop_pid, use_server


@contextmanager
def local_stack() -> Iterator[Path]:
    """Start a Prefect server in a temporary home (unless PREFECT_API_URL is set) and point at it."""
    home = Path(tempfile.mkdtemp(prefix="mltrain-bench-"))
    os.environ["PREFECT_MLTRAIN_HOME"] = str(home)
    info = None
    if not os.environ.get("PREFECT_API_URL"):
        info = start_server(home / "prefect", free_port())
        use_server(info)
    try:
        yield home
    finally:
        if info is not None:
            try:
                drain_prefect_queues()
            finally:
                stop_pid(info.pid)  # type: ignore[arg-type]
