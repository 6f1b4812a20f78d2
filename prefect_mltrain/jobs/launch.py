"""How a job's process is started in its built environment: a venv/conda prefix or a Docker image."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Put first on every job's PYTHONPATH: its sitecustomize keeps the job's MLflow run active
#: in the script (see that file). Mounted into containers at the same path.
BOOTSTRAP_DIR = Path(__file__).parent / "bootstrap"


@dataclass
class Launch:
    """The command line and variables that start a job's process, and what to do after it."""

    argv: list[str]
    env: dict[str, str]
    cleanup: Callable[[], None] = field(default=lambda: None)


def job_pythonpath(env: Mapping[str, str]) -> str:
    """The bootstrap folder, then the PYTHONPATH the job would have had."""
    inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return os.pathsep.join(p for p in (str(BOOTSTRAP_DIR), inherited) if p)


def prepare_process(
    argv: Sequence[str],
    built: Any,
    workdir: str,
    env: Mapping[str, str],
    *,
    artifact_uri: str | None = None,
    gpu_ids: Sequence[str] = (),
) -> Launch:
    """Start `argv` in `workdir` within the `BuiltEnvironment` `built`, with `env` added.

    A venv or conda environment goes first on PATH (so `python` is its Python); a Docker
    image runs the command in a container (`docker run`) with `workdir`, a local MLflow store
    and the bootstrap mounted at their own paths, and `cleanup` removes that container.
    `gpu_ids` pin the process to its GPUs (`CUDA_VISIBLE_DEVICES`, or `--gpus` for a container).
    """
    from prefect_mltrain.jobs.containers import (
        container_launch,
        local_store_paths,
        remove_container,
    )

    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    full["PYTHONPATH"] = job_pythonpath(env)
    if gpu_ids:
        full["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if built.image:
        names = sorted({*env, "PYTHONUNBUFFERED", "PYTHONPATH"})
        mounts = [*local_store_paths(full, artifact_uri), str(BOOTSTRAP_DIR)]
        launch = container_launch(built.image, list(argv), workdir, names, mounts, len(gpu_ids))
        return Launch(launch.argv, full, lambda: remove_container(launch.name))
    full["PATH"] = f"{built.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    if built.prefix:
        full["VIRTUAL_ENV"] = built.prefix
    return Launch(list(argv), full)
