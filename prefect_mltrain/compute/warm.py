"""The warm local compute: one persistent Dask cluster per project home, shared by every flow.

A new `LocalCluster` per flow costs 13-20 s on a small machine before the first trial (the
workers' start and their imports of Prefect, scikit-learn and MLflow). Instead the home keeps
a real `dask scheduler` process and a `dask worker` process (its nannies restart a worker
that dies) with one worker process per core, each with the heavy imports preloaded
(`compute.warm_preload`). It is started once, under a lock, by `prefect-mltrain server start`
or by the first flow that needs it; its address is recorded in `warm-compute.json` under the
home, and `server stop` stops it.

Like `server.stack`, nothing here imports Dask, Prefect or MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect_mltrain.errors import ComputeError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.files import exclusive, write_atomically
from prefect_mltrain.system.net import free_port
from prefect_mltrain.system.process import pid_alive

logger = logging.getLogger("prefect_mltrain.compute")

_STATE_FILE = "warm-compute.json"
PRELOAD = "prefect_mltrain.compute.warm_preload"
#: Seconds a worker may take to start (its preload, on a busy machine) and waits for a scheduler
#: that went away before it exits; the next flow or `server stop` ends it sooner.
DEATH_TIMEOUT = 600


@dataclass(frozen=True)
class WarmCompute:
    """A running warm cluster: its scheduler's address and the process groups to stop."""

    address: str
    scheduler_pid: int
    workers_pid: int
    n_workers: int
    threads_per_worker: int
    #: What the flows that use it must share with it (see `environment_key`).
    environment: str
    started: bool = False


def environment_key(api_url: str | None = None) -> str:
    """What the warm workers inherit from the process that started them and a flow must match.

    The Prefect API (`api_url`, else `PREFECT_API_URL`) and this package's settings: a flow
    pointed elsewhere (a team server, another MLflow port) must not run its trials on workers
    that talk to the home's servers.

    >>> environment_key("http://127.0.0.1:4200/api") == environment_key("http://127.0.0.1:4201/api")
    False
    """
    found = {k: v for k, v in os.environ.items() if k.startswith("PREFECT_MLTRAIN_")}
    found["PREFECT_API_URL"] = api_url or os.environ.get("PREFECT_API_URL", "")
    return json.dumps(found, sort_keys=True)


def sizing(settings: MltrainSettings) -> tuple[int, int]:
    """Worker processes and threads per worker: `warm_workers` (0: one per core) and `warm_threads`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (settings.warm_workers or max(cores, 1), settings.warm_threads)


def _answers(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _read_state(settings: MltrainSettings) -> WarmCompute | None:
    try:
        return WarmCompute(**json.loads((settings.home_dir / _STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_warm_compute(settings: MltrainSettings | None = None) -> WarmCompute | None:
    """The home's warm cluster if it runs (recorded, scheduler and workers alive, port answering), else None."""
    settings = settings or MltrainSettings()
    state = _read_state(settings)
    if state is None or not pid_alive(state.scheduler_pid) or not pid_alive(state.workers_pid):
        return None  # a cluster without its workers would leave every flow waiting
    if not _answers(state.address):
        return None
    return state


def _dask_dir(settings: MltrainSettings) -> Path:
    path = settings.home_dir / "dask"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _spawn(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> int:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives its starter; stopped as a process group
        )
    return proc.pid


def start_warm_compute(settings: MltrainSettings, api_url: str | None = None, timeout: float = 60.0) -> WarmCompute:
    """Start a scheduler and its workers; return once the scheduler answers (workers come up after).

    The workers inherit this process's environment, with `api_url` as their `PREFECT_API_URL`.

    Raises:
        ComputeError: The scheduler did not answer within `timeout`; its log tail says why.
    """
    n_workers, threads = sizing(settings)
    folder = _dask_dir(settings)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PREFECT_MLTRAIN_HOME=str(settings.home_dir), PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    dask = [sys.executable, "-m", "dask"]
    scheduler_argv = [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    scheduler_pid = _spawn(scheduler_argv, folder / "scheduler.log", env, folder)
    workers_argv = [
        *dask, "worker", address,
        "--nworkers", str(n_workers), "--nthreads", str(threads),
        "--preload", PRELOAD, "--no-dashboard", "--death-timeout", str(DEATH_TIMEOUT),
        "--local-directory", str(folder),
    ]  # fmt: skip
    workers_pid = _spawn(workers_argv, folder / "workers.log", env, folder)
    warm = WarmCompute(address, scheduler_pid, workers_pid, n_workers, threads, environment_key(api_url), started=True)
    deadline = time.monotonic() + timeout
    while not _answers(address, timeout=0.5):
        if time.monotonic() > deadline or not pid_alive(scheduler_pid):
            _stop(warm)
            log_path = folder / "scheduler.log"
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
            raise ComputeError(
                f"The warm Dask scheduler at {address} did not answer within {timeout:.0f} s. "
                f"Its log ({log_path}) ends with:\n{tail}\nFix: see the log, or run flows on a "
                f"cluster of their own with PREFECT_MLTRAIN_WARM_COMPUTE=false."
            )
        time.sleep(0.05)
    return warm


def ensure_warm_compute(settings: MltrainSettings | None = None, api_url: str | None = None) -> WarmCompute:
    """Return the home's warm cluster, starting it if needed (processes asking at once start one).

    A cluster it starts has `api_url` (else `PREFECT_API_URL`) as its workers' Prefect API.

    A recorded cluster whose scheduler died (killed, machine restarted) is replaced, and its
    leftover workers stopped, with a log line that says so.
    """
    settings = settings or MltrainSettings()
    running = running_warm_compute(settings)
    if running is not None:
        return running
    with exclusive(settings.home_dir / "warm-compute.lock"):
        running = running_warm_compute(settings)  # another process may have started it meanwhile
        if running is not None:
            return running
        gone = _read_state(settings)
        if gone is not None:
            dead = [
                f"{what} pid {pid}"
                for what, pid in (("scheduler", gone.scheduler_pid), ("workers", gone.workers_pid))
                if not pid_alive(pid)
            ]
            logger.warning(
                "The warm Dask compute of %s at %s is gone (%s not running); starting a fresh one.",
                settings.home_dir,
                gone.address,
                ", ".join(dead) or "its scheduler does not answer",
            )
            _stop(gone)
        warm = start_warm_compute(settings, api_url)
        write_atomically(settings.home_dir / _STATE_FILE, json.dumps(asdict(warm) | {"started": False}))
        logger.info(
            "Started the warm Dask compute at %s (%d worker process(es) x %d thread(s)).",
            warm.address,
            warm.n_workers,
            warm.threads_per_worker,
        )
        return warm


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)  # reap a leader this process started (a zombie still "exists")
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(warm: WarmCompute, timeout: float = 5.0) -> None:
    """Stop the scheduler's and the workers' process groups at once: SIGTERM, then SIGKILL."""
    groups = (warm.workers_pid, warm.scheduler_pid)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pgid in groups:  # reap what was killed, where this process started it
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, os.WNOHANG)


def stop_warm_compute(settings: MltrainSettings | None = None) -> bool:
    """Stop the home's warm cluster (scheduler and workers); return whether one was running."""
    settings = settings or MltrainSettings()
    with exclusive(settings.home_dir / "warm-compute.lock"):
        state = _read_state(settings)
        (settings.home_dir / _STATE_FILE).unlink(missing_ok=True)
        if state is None:
            return False
        was_running = pid_alive(state.scheduler_pid) or pid_alive(state.workers_pid)
        _stop(state)
        return was_running
