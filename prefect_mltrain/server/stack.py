"""The embedded stack: a real local Prefect server (SQLite) and MLflow server under the project home.

Nothing here imports Prefect, so the CLI and the test suite can start a server and point
`PREFECT_API_URL` at it before Prefect reads its settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.server.mlflow_server import ensure_mlflow_server
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.process import stop_pid

_STATE_FILE = "prefect-server.json"


@dataclass(frozen=True)
class ServerInfo:
    """A running Prefect server."""

    api_url: str
    pid: int | None
    started: bool

    @property
    def ui_url(self) -> str:
        """The URL of the Prefect UI of this server."""
        return self.api_url.removesuffix("/api")


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Tell whether a Prefect API answers its health check.

    Args:
        api_url: The API URL, ending in `/api`.
        timeout: Seconds to wait for an answer.

    Returns:
        True when `GET {api_url}/health` answers 200.
    """
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(home: Path, port: int, timeout: float = 120.0) -> ServerInfo:
    """Start `prefect server start` on 127.0.0.1:`port` with its SQLite database under `home`.

    It runs through `prefect_mltrain.server.sqlite_server`, so concurrent writers queue instead of
    failing with `database is locked` (a 503 and a 2 s client retry).

    The server runs in its own session so it outlives the caller; stop it with `stop_server`.

    Args:
        home: Directory for the server's `PREFECT_HOME` (database and logs).
        port: TCP port to listen on.
        timeout: Seconds to wait for the health check.

    Returns:
        The running server.

    Raises:
        ConfigurationError: The port is taken or the server did not come up; the log tail says why.
    """
    api_url = f"http://127.0.0.1:{port}/api"
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ConfigurationError(
                f"Port {port} on 127.0.0.1 is taken by something that is not a healthy Prefect "
                f"server. Fix: free it, or choose another with PREFECT_MLTRAIN_SERVER_PORT."
            )
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        PREFECT_HOME=str(home),
        # The UI asks /ui-settings where its API is; Prefect's default is port 4200, whatever
        # port this server listens on, so on another port the UI would show another server.
        PREFECT_SERVER_UI_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect_mltrain.server.sqlite_server",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(api_url, timeout=1.0):
            return ServerInfo(api_url=api_url, pid=proc.pid, started=True)
        if proc.poll() is not None:
            break
        time.sleep(0.25)
    proc.kill()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise ConfigurationError(
        f"The local Prefect server on port {port} did not become healthy within {timeout:.0f} s. "
        f"Its log ({log_path}) ends with:\n{tail}"
    )


def ensure_server(settings: MltrainSettings | None = None) -> ServerInfo:
    """Return a reachable Prefect server: `PREFECT_API_URL` if set, else the local one.

    The local server is started on first use and kept running (its pid is recorded under the
    project home), so later jobs and the UI find it.

    Raises:
        ConfigurationError: `PREFECT_API_URL` is set but does not answer.
    """
    settings = settings or MltrainSettings()
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not is_healthy(configured):
            raise ConfigurationError(
                f"PREFECT_API_URL={configured!r} does not answer its health check. Fix: start "
                f"that server, or unset PREFECT_API_URL to use the embedded local server."
            )
        return ServerInfo(api_url=configured, pid=None, started=False)
    _start_mlflow_server(settings)  # comes up meanwhile; the first MLflow call waits for it
    state_path = settings.home_dir / _STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if is_healthy(state["api_url"]):
            return ServerInfo(api_url=state["api_url"], pid=state["pid"], started=False)
    info = start_server(settings.home_dir / "prefect", settings.server_port)
    state_path.write_text(json.dumps({"api_url": info.api_url, "pid": info.pid}))
    return info


def _start_mlflow_server(settings: MltrainSettings) -> None:
    """Start the home's MLflow server without waiting for it; a problem is reported where it is used."""
    with contextlib.suppress(ConfigurationError):
        ensure_mlflow_server(settings, wait=False)


def stop_local_server(settings: MltrainSettings | None = None) -> bool:
    """Stop the local server that `ensure_server` started; return whether one was running."""
    settings = settings or MltrainSettings()
    state_path = settings.home_dir / _STATE_FILE
    if not state_path.exists():
        return False
    state = json.loads(state_path.read_text())
    stop_pid(int(state["pid"]))
    state_path.unlink()
    return True


def use_server(info: ServerInfo) -> None:
    """Point this process, and the processes it starts (Dask workers), at `info`'s API.

    Call it before Prefect is imported; `api_settings()` covers code that already imported it.
    """
    os.environ["PREFECT_API_URL"] = info.api_url
    os.environ["PREFECT_UI_URL"] = info.ui_url
