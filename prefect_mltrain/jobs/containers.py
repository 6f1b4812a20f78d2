"""Run a job's command in a Docker container through the `docker run` CLI.

Going through the CLI lets `run_command` stream the container's stdout and stderr line by
line exactly as it streams a virtualenv job's, with the same exit code and stderr tail. Job
variables are passed as `-e NAME` with the value in the CLI's own environment, so values
never appear in argv (`ps`) or the logged command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from prefect_mltrain.compute.devices import visible_devices as devices_from_env
from prefect_mltrain.errors import DockerUnavailableError
from prefect_mltrain.system.docker_engine import START_HINT


@dataclass(frozen=True)
class ContainerSpec:
    """Where a job's command runs when its environment is a Docker image.

    Attributes:
        image: Image tag or id.
        mounts: Host folders mounted at the same path besides the working directory.
        gpus: GPUs to request (`DaskCompute.gpus_per_trial`); 0 for none.
    """

    image: str
    mounts: list[str]
    gpus: float = 0


@dataclass(frozen=True)
class ContainerLaunch:
    """A `docker run` command line and the container's name, for removal afterwards."""

    argv: list[str]
    name: str


def local_store_paths(tracking_env: Mapping[str, str], artifact_uri: str | None = None) -> list[str]:
    """Host folders a job needs at the same path to reach a local MLflow store.

    >>> local_store_paths({"MLFLOW_TRACKING_URI": "sqlite:////home/u/mlflow/mlflow.db"}, "file:///home/u/mlflow/artifacts")
    ['/home/u/mlflow', '/home/u/mlflow/artifacts']
    >>> local_store_paths({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}, "s3://bucket/x")
    []
    """
    paths: list[str] = []
    uri = tracking_env.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):
        paths.append(str(Path(uri[len("sqlite:///") :]).parent))
    elif uri.startswith("file:"):
        paths.append(unquote(urlparse(uri).path))
    elif uri and "://" not in uri:
        paths.append(uri)
    if artifact_uri and artifact_uri.startswith("file:"):
        paths.append(unquote(urlparse(artifact_uri).path))
    return paths


def gpu_arguments(gpus: float, visible_devices: str | None = None) -> list[str]:
    """`docker run` arguments that give the container `gpus` GPUs (none for 0).

    The worker's `CUDA_VISIBLE_DEVICES` (set per worker by dask-cuda) picks which ones.

    >>> gpu_arguments(0)
    []
    >>> gpu_arguments(1, "2,3")
    ['--gpus', '"device=2"']
    >>> gpu_arguments(0.5)
    ['--gpus', '1']
    """
    if gpus <= 0:
        return []
    count = max(1, int(-(-gpus // 1)))
    devices = devices_from_env({"CUDA_VISIBLE_DEVICES": visible_devices}) if visible_devices else []
    if devices:
        return ["--gpus", f'"device={",".join(devices[:count])}"']
    return ["--gpus", str(count)]


def container_launch(
    image: str,
    argv: list[str],
    workdir: str,
    env_names: list[str],
    mounts: list[str],
    gpus: float = 0,
) -> ContainerLaunch:
    """The `docker run` command that runs `argv` in `image` with `workdir` mounted as its cwd.

    Args:
        image: Image tag or id.
        argv: The job's command inside the container.
        workdir: Host folder (the source snapshot) mounted read-write at the same path, so
            `outputs/` and `logs/` written there land on the host.
        env_names: Variables to pass in; their values come from the CLI's environment.
        mounts: More host folders mounted at the same path (a local MLflow store).
        gpus: GPUs to request (`DaskCompute.gpus_per_trial`).

    Raises:
        DockerUnavailableError: The `docker` CLI is not installed.
    """
    docker = shutil.which("docker")
    if docker is None:
        raise DockerUnavailableError(
            "This job's environment is a Docker image, but the `docker` command is not on PATH "
            f"of the worker. {START_HINT}"
        )
    name = f"mltrain-job-{uuid.uuid4().hex[:12]}"
    cmd = [docker, "run", "--rm", "--name", name, "--network", "host", "--init"]
    if os.getuid() != 0:
        # Files written back to the host belong to the user who ran the job.
        cmd += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    seen: set[str] = set()
    for path in [workdir, *mounts]:
        if path not in seen and not any(path.startswith(p.rstrip("/") + "/") for p in seen):
            Path(path).mkdir(parents=True, exist_ok=True)
            cmd += ["-v", f"{path}:{path}"]
            seen.add(path)
    cmd += ["-w", workdir]
    for var in sorted(env_names):
        cmd += ["-e", var]
    cmd += gpu_arguments(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    cmd += [image, *argv]
    return ContainerLaunch(cmd, name)


def remove_container(name: str) -> None:
    """Remove a job's container if it is still there (killed client, timeout, cancel)."""
    docker = shutil.which("docker") or "docker"
    subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60, check=False)
