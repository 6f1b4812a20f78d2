"""Benchmarks run against a real local Prefect server in a throwaway project home."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_mltrain.server.stack import start_server, use_server
from prefect_mltrain.system.net import free_port
from prefect_mltrain.system.process import stop_pid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-only helpers
from helpers import drain_prefect_queues  # noqa: E402


@contextmanager
def local_stack() -> Iterator[Path]:
    """Start the stack in a temporary home: its MLflow server, and a Prefect server unless PREFECT_API_URL is set."""
    from prefect_mltrain.server.mlflow_server import ensure_mlflow_server, stop_mlflow_server

    home = Path(tempfile.mkdtemp(prefix="mltrain-bench-"))
    os.environ["PREFECT_MLTRAIN_HOME"] = str(home)
    os.environ["PREFECT_MLTRAIN_MLFLOW_PORT"] = str(free_port())
    ensure_mlflow_server(wait=False)  # comes up while Prefect's does
    info = None
    if not os.environ.get("PREFECT_API_URL"):
        info = start_server(home / "prefect", free_port())
        use_server(info)
        from prefect_mltrain.flows import use_fast_heartbeats

        use_fast_heartbeats()  # as the CLI does
    try:
        ensure_mlflow_server()
        yield home
    finally:
        stop_mlflow_server()
        if info is not None:
            try:
                drain_prefect_queues()
            finally:
                stop_pid(info.pid)  # type: ignore[arg-type]
