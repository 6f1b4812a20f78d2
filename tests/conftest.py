"""Test harness: a real Prefect server (SQLite) and project home per session, a real Dask cluster.

The server is started in `pytest_configure`, before any test module imports Prefect, so
Prefect and the Dask workers it spawns all talk to it. Set `PREFECT_API_URL` to test against
a server of your own instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    from prefect_mltrain.server.stack import start_server, use_server
    from prefect_mltrain.system.net import free_port

    home = Path(tempfile.mkdtemp(prefix="mltrain-test-"))
    os.environ["PREFECT_MLTRAIN_HOME"] = str(home)
    # The home's MLflow server (every job and trial logs to it): never on a user's port 5000.
    os.environ.setdefault("PREFECT_MLTRAIN_MLFLOW_PORT", str(free_port()))
    _state["home"] = home
    # The unit tier (`pytest -m unit`) tests pure modules: no server to start.
    if config.getoption("markexpr", "") == "unit":
        return
    from prefect_mltrain.server.mlflow_server import ensure_mlflow_server

    # The project's MLflow server, as `server start` runs it; it comes up while Prefect's does.
    ensure_mlflow_server(wait=False)
    if not os.environ.get("PREFECT_API_URL"):
        port = free_port()
        # Scheduled runs are made within seconds, not a minute (tests/test_schedules.py); a
        # server of your own needs the same setting for those tests.
        os.environ.setdefault("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "5")
        info = start_server(home / "prefect", port)
        use_server(info)
        _state["server"] = info
    from prefect_mltrain.flows import use_fast_heartbeats

    use_fast_heartbeats()  # as the CLI does, whichever server; tests/test_heartbeats.py checks both ways


def pytest_unconfigure(config: pytest.Config) -> None:
    from helpers import drain_prefect_queues

    from prefect_mltrain.blocks.compute import close_shared_clusters
    from prefect_mltrain.compute.warm import stop_warm_compute
    from prefect_mltrain.server.mlflow_server import stop_mlflow_server
    from prefect_mltrain.system.process import stop_pid

    close_shared_clusters()
    stop_warm_compute()  # the home's warm cluster, if a flow on the default compute started one
    stop_mlflow_server()
    info = _state.get("server")
    if info is not None:
        try:
            drain_prefect_queues()
        finally:
            stop_pid(info.pid)  # type: ignore[attr-defined]
    shutil.rmtree(str(_state.get("home", "")), ignore_errors=True)


@pytest.fixture(scope="session")
def project_home() -> Path:
    """The session's project home (`PREFECT_MLTRAIN_HOME`)."""
    return Path(os.environ["PREFECT_MLTRAIN_HOME"])


@pytest.fixture(scope="session")
def compute():
    """A 2-worker LocalCluster, started once and shared by the session's flows."""
    from prefect_mltrain.blocks import DaskCompute

    return DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
    )


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for models and blocks, so tests never collide."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def prefect_client():
    """A synchronous Prefect client on the session's server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client
