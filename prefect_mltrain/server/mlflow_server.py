"""The embedded MLflow tracking server: `mlflow server` on the project home's SQLite store.

It serves the same store and artifact root that runs are logged to, so every MLflow link the
product prints opens in a browser, and its artifacts are served through it (`--serve-artifacts`).
Started by `prefect-mltrain server start` (and after the demo), stopped by `server stop`; its pid
and URL are recorded under the project home so every process finds the same one.

Like `stack`, nothing here imports MLflow or Prefect.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.files import exclusive, write_atomically
from prefect_mltrain.system.net import free_port
from prefect_mltrain.system.process import pid_alive, stop_pid

_STATE_FILE = "mlflow-server.json"


@dataclass(frozen=True)
class MlflowServerInfo:
    """A running MLflow tracking server (its URL is also the UI's)."""

    url: str
    pid: int | None
    started: bool


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Tell whether an MLflow server answers `GET {url}/health` with 200."""
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_mlflow_server(mlflow_dir: Path, port: int, wait: bool = True, timeout: float = 180.0) -> MlflowServerInfo:
    """Start `mlflow server` on 127.0.0.1:`port` over `mlflow_dir`'s SQLite store and artifact root.

    Args:
        mlflow_dir: The project home's MLflow folder (`mlflow.db`, `artifacts/`).
        port: TCP port to listen on.
        wait: Wait for the health check (False: return at once; the UI comes up seconds later).
        timeout: Seconds to wait for the health check.

    Raises:
        ConfigurationError: The port is taken, or the server did not come up; the log tail says why.
    """
    url = f"http://127.0.0.1:{port}"
    if _port_taken(port):
        raise ConfigurationError(
            f"Port {port} on 127.0.0.1 is taken by something that is not this project's MLflow "
            f"server. Fix: free it, or choose another with PREFECT_MLTRAIN_MLFLOW_PORT."
        )
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with open(_log_path(mlflow_dir), "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(mlflow_dir / "artifacts"),
            ],  # fmt: skip
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    info = MlflowServerInfo(url=url, pid=proc.pid, started=True)
    if wait:
        _wait_healthy(info, mlflow_dir, timeout)
    return info


def _log_path(mlflow_dir: Path) -> Path:
    return mlflow_dir / "server.log"


def _wait_healthy(info: MlflowServerInfo, mlflow_dir: Path, timeout: float = 180.0) -> None:
    """Wait for a server that was started (its pid alive) to answer; stop it and say why if it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(info.url, timeout=1.0):
            return
        if info.pid is not None and not pid_alive(info.pid):
            break
        time.sleep(0.1)
    if info.pid is not None:
        stop_pid(info.pid)
    log_path = _log_path(mlflow_dir)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
    raise ConfigurationError(
        f"The local MLflow server at {info.url} did not become healthy within {timeout:.0f} s. "
        f"Its log ({log_path}) ends with:\n{tail}"
    )


def running_mlflow_server(settings: MltrainSettings | None = None) -> MlflowServerInfo | None:
    """The project home's MLflow server if it is running (recorded, and alive or answering), else None."""
    settings = settings or MltrainSettings()
    state_path = settings.home_dir / _STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None
    if pid_alive(int(state["pid"])):
        return MlflowServerInfo(url=state["url"], pid=int(state["pid"]), started=False)
    # Another pid namespace sharing the home (a flow in a container on the host network): it answers.
    if is_healthy(state["url"], timeout=1.0):
        return MlflowServerInfo(url=state["url"], pid=None, started=False)
    return None


def ensure_mlflow_server(settings: MltrainSettings | None = None, wait: bool = True) -> MlflowServerInfo:
    """Return the project home's MLflow server, starting it on `PREFECT_MLTRAIN_MLFLOW_PORT` if needed.

    Processes that ask at the same moment start one server between them (a lock under the
    home); with `wait`, each waits for its health check.

    Raises:
        ConfigurationError: The port is taken by something else, or the server did not come up.
    """
    settings = settings or MltrainSettings()
    running = running_mlflow_server(settings)
    if running is None:
        with exclusive(settings.home_dir / "mlflow-server.lock"):
            running = running_mlflow_server(settings)  # another process may have started it meanwhile
            if running is None:
                running = start_mlflow_server(settings.mlflow_dir, _port(settings), wait=False)
                write_atomically(settings.home_dir / _STATE_FILE, json.dumps({"url": running.url, "pid": running.pid}))
    if wait and not is_healthy(running.url):
        _wait_healthy(running, settings.mlflow_dir)
    return running


def _port(settings: MltrainSettings) -> int:
    """The port to start on: the one asked for, or, when 5000 (the default) is taken, a free one.

    Port 5000 is often someone else's (macOS's AirPlay receiver, another MLflow); the server's
    URL is recorded under the home, so every process finds it wherever it went. A port the
    user chose (`PREFECT_MLTRAIN_MLFLOW_PORT`) is used as given, or refused.
    """
    if "PREFECT_MLTRAIN_MLFLOW_PORT" in os.environ or not _port_taken(settings.mlflow_port):
        return settings.mlflow_port
    port = free_port()
    logging.getLogger("prefect_mltrain").warning(
        "Port %d is taken by something else; the project's MLflow server listens on %d instead "
        "(set PREFECT_MLTRAIN_MLFLOW_PORT to choose).",
        settings.mlflow_port,
        port,
    )
    return port


def stop_mlflow_server(settings: MltrainSettings | None = None) -> bool:
    """Stop the project home's MLflow server; return whether one was running."""
    settings = settings or MltrainSettings()
    state_path = settings.home_dir / _STATE_FILE
    running = running_mlflow_server(settings)
    state_path.unlink(missing_ok=True)
    if running is None or running.pid is None:
        return False
    stop_pid(running.pid)
    return True
