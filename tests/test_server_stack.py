"""`prefect-mltrain server start|status|stop`: both servers of the stack, as a new user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
from helpers import wait_for_http

from prefect_mltrain.system.net import free_port


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("prefect-mltrain")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def test_server_start_prints_both_uis_and_both_answer_until_stop(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    prefect_port, mlflow_port = free_port(), free_port()
    env |= {
        "PREFECT_HOME": str(tmp_path / "profile"),
        "PREFECT_MLTRAIN_HOME": str(tmp_path / "home"),
        "PREFECT_MLTRAIN_SERVER_PORT": str(prefect_port),
        "PREFECT_MLTRAIN_MLFLOW_PORT": str(mlflow_port),
    }
    try:
        out = _cli(env, "server", "start")
        assert out.returncode == 0, out.stderr[-3000:]
        prefect_ui, mlflow_ui = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
        assert f"(UI {prefect_ui})" in out.stdout and f"(UI {mlflow_ui})" in out.stdout, out.stdout
        assert wait_for_http(f"{prefect_ui}/api/health", timeout=10) == "true"
        assert "<html" in wait_for_http(mlflow_ui, timeout=10).lower()
        # The MLflow server is over the home's own store: an experiment made through it is in the file.
        made = httpx.post(f"{mlflow_ui}/api/2.0/mlflow/experiments/create", json={"name": "seen"}, timeout=10)
        assert made.status_code == 200, made.text
        assert (tmp_path / "home" / "mlflow" / "mlflow.db").exists()
        again = _cli(env, "server", "start")  # reused, not a second pair
        assert again.returncode == 0 and f"(UI {mlflow_ui})" in again.stdout
        status = _cli(env, "server", "status")
        assert status.returncode == 0 and f"running at {mlflow_ui}" in status.stdout, status.stdout
    finally:
        stopped = _cli(env, "server", "stop")
    assert stopped.stdout.strip() == "stopped"
    for url in (f"http://127.0.0.1:{prefect_port}/api/health", f"http://127.0.0.1:{mlflow_port}/health"):
        try:
            httpx.get(url, timeout=3)
            raise AssertionError(f"{url} still answers after `server stop`")
        except httpx.HTTPError:
            pass
    status = _cli(env, "server", "status")
    assert status.returncode == 1 and "MLflow server:  not running" in status.stdout


def test_mlflow_port_taken_by_something_else_is_refused_with_the_fix(tmp_path):
    import socket

    from prefect_mltrain.errors import ConfigurationError
    from prefect_mltrain.server.mlflow_server import start_mlflow_server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            start_mlflow_server(tmp_path / "mlflow", port)
            raise AssertionError("started on a taken port")
        except ConfigurationError as error:
            assert f"Port {port}" in str(error) and "PREFECT_MLTRAIN_MLFLOW_PORT" in str(error)
    assert not (tmp_path / "mlflow" / "server.log").exists()  # nothing half-started
