"""Serve a registered model over HTTP with MLflow's scoring server (`/ping`, `/invocations`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.net import free_port
from prefect_mltrain.system.process import stop_pid
from prefect_mltrain.tracking.models import save_sklearn_model

# Frameworks MLflow serves as they are registered; single files are wrapped first.
_SERVABLE = ("sklearn", "pyfunc", "pytorch")


@dataclass(frozen=True)
class ModelServer:
    """A running scoring server."""

    name: str
    version: int
    url: str
    pid: int
    log: str


def _state_path(name: str) -> Path:
    directory = MltrainSettings().home_dir / "serving"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.json"


def _mlflow_model_path(entry) -> str:  # type: ignore[no-untyped-def]
    """An MLflow model the scoring server can load: the registry URI, or a wrapped joblib file."""
    if entry.framework in _SERVABLE:
        return entry.model_uri
    if entry.framework != "joblib":
        raise ConfigurationError(
            f"Model {entry.document_name!r} is a {entry.framework!r} file, which the scoring server "
            f"cannot load. Fix: register an MLflow model folder (e.g. `mlflow.pytorch.save_model`)."
        )
    target = MltrainSettings().home_dir / "serving" / entry.document_name
    if not (target / "MLmodel").exists():
        shutil.rmtree(target, ignore_errors=True)
        save_sklearn_model(entry.load_model(), target, serialization_format="cloudpickle")
    return str(target)


def serve(entry: Any, port: int | None = None, host: str = "127.0.0.1", timeout: float = 120.0) -> ModelServer:
    """Start a scoring server for the registered model version `entry` (a `RegisteredModel`).

    The server runs in the background and outlives the caller; stop it with `stop(name)`.

    Raises:
        ConfigurationError: The model is not servable, or the server did not come up (log tail).
    """
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise ConfigurationError(
            f"`port`={port!r} is not a TCP port (1-65535). Fix: pass e.g. 5001, or none for a free one."
        )
    name = entry.model_name
    running = status(name)
    if running is not None:
        raise ConfigurationError(
            f"Model {name!r} is already served at {running.url} (pid {running.pid}). Fix: "
            f"`prefect-mltrain model stop {name}` first, or use that server."
        )
    model = _mlflow_model_path(entry)
    port = port or free_port()
    log_path = _state_path(name).with_suffix(".log")
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": entry.tracking_uri,
        "MLFLOW_REGISTRY_URI": entry.tracking_uri,
        # mlflow starts `uvicorn` by name: this interpreter's scripts must come first on PATH.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [mlflow_exe, "models", "serve", "-m", model, "-p", str(port), "-h", host, "--env-manager", "local"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                server = ModelServer(name, entry.version, url, proc.pid, str(log_path))
                _state_path(name).write_text(json.dumps(asdict(server)))
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop_pid(proc.pid)
    raise ConfigurationError(
        f"The scoring server for {entry.document_name!r} did not come up within {timeout:.0f} s. "
        f"Its log ({log_path}) ends with:\n{log_path.read_text(errors='replace')[-2000:]}"
    )


def status(name: str) -> ModelServer | None:
    """The running server of model `name`, or None."""
    path = _state_path(name)
    if not path.exists():
        return None
    server = ModelServer(**json.loads(path.read_text()))
    try:
        if httpx.get(f"{server.url}/ping", timeout=2).status_code == 200:
            return server
    except httpx.HTTPError:
        pass
    path.unlink()
    return None


def stop(name: str) -> bool:
    """Stop the scoring server of model `name`; return whether one was running."""
    path = _state_path(name)
    if not path.exists():
        return False
    server = ModelServer(**json.loads(path.read_text()))
    stop_pid(server.pid)
    path.unlink()
    return True
