"""The one launcher: how a job's process starts in its built environment and runs to its end.

Command jobs (`tasks.run_command`), their distributed ranks and command trials
(`sweep.CommandTrial`) all start their process here: `in_environment` puts a venv or conda
prefix first on PATH, or turns a Docker image into a `ContainerSpec`; `run` streams the
process's output (in its container, removed afterwards whatever happened).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect_mltrain.jobs.containers import ContainerSpec, container_launch, remove_container
from prefect_mltrain.system.process import ProcessResult, stream_process

#: Put first on every job's PYTHONPATH: its sitecustomize keeps the job's MLflow run active
#: in the script (see that file). Mounted into containers at the same path.
BOOTSTRAP_DIR = Path(__file__).parent / "bootstrap"
#: Run by path between the launcher and every job process (see that file).
SUPERVISOR = Path(__file__).parent / "supervisor.py"


def job_pythonpath(env: Mapping[str, str]) -> str:
    """The bootstrap folder, then the PYTHONPATH the job would have had."""
    inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return os.pathsep.join(p for p in (str(BOOTSTRAP_DIR), inherited) if p)


def in_environment(
    built: Any, env: Mapping[str, str], mounts: Sequence[str] = (), gpus: float = 0
) -> tuple[dict[str, str], ContainerSpec | None]:
    """The variables and container that run a command in the `BuiltEnvironment` `built`.

    A venv or conda environment goes first on PATH (so `python` is its Python) and sets
    `VIRTUAL_ENV`; a Docker image gives a `ContainerSpec` with `mounts` (host folders at their
    own paths) and `gpus`, and leaves the variables as they are (the image has its own PATH).
    """
    if built.image:
        return dict(env), ContainerSpec(built.image, [*mounts, str(BOOTSTRAP_DIR)], gpus)
    placed = {**env, "PATH": f"{built.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if built.prefix:
        placed["VIRTUAL_ENV"] = built.prefix
    return placed, None


def supervised(argv: Sequence[str], container: str | None = None) -> list[str]:
    """`argv` under the job supervisor: it dies with this process (see `jobs.supervisor`).

    Should this process die, the supervisor kills the job's process group, removes its
    `container` and ends the job's MLflow run (KILLED) and its Prefect flow run (Crashed).
    """
    wrapped = [sys.executable, str(SUPERVISOR), "--parent", str(os.getpid())]
    if container:
        wrapped += ["--container", container]
    flow_run_id = _flow_run_id()
    if flow_run_id:
        wrapped += ["--flow-run-id", flow_run_id]
    return [*wrapped, "--", *argv]


def _flow_run_id() -> str | None:
    """The flow run this job belongs to (from a flow or a task of one), if any."""
    from prefect.runtime import flow_run

    try:
        return flow_run.get_id()
    except Exception:  # noqa: BLE001 - outside Prefect: nothing to mark
        return None


def run(
    argv: Sequence[str],
    cwd: str | Path,
    env: Mapping[str, str],
    on_line: Callable[[str, str], None],
    *,
    container: ContainerSpec | None = None,
    timeout: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ProcessResult:
    """Run `argv` in `cwd` with `env` added to this process's, handing each output line to `on_line`.

    With a `container`, `argv` runs in it (`docker run`, `cwd` mounted as its working
    directory, the names of `env` passed in), and the container is removed afterwards:
    killing the `docker run` client alone would leave it running.
    """
    name = None
    if container is not None:
        launch = container_launch(container.image, list(argv), str(cwd), list(env), container.mounts, container.gpus)
        argv, name = launch.argv, launch.name
    try:
        return stream_process(
            supervised(argv, container=name),
            on_line=on_line,
            env={**os.environ, **env},
            cwd=cwd,
            timeout=timeout,
            should_stop=should_stop,
        )
    finally:
        if name is not None:
            remove_container(name)
