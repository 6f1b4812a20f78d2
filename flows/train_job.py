"""`train_job`: Azure ML's command job. Snapshot, environment, command on Dask, tracked in MLflow."""

from __future__ import annotations

import os
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.containers import ContainerSpec, local_store_paths
from prefect_mltrain.errors import ConfigurationError, ModelRegistrationError
from prefect_mltrain.flows._links import flow_run_info, mlflow_tags, publish_run_links
from prefect_mltrain.frameworks import detect_framework
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.environment import build_environment
from prefect_mltrain.tasks.register import register_model
from prefect_mltrain.tasks.snapshot import snapshot_source

import prefect_mltrain

# Its sitecustomize keeps the job's MLflow run active in the script (see that file).
BOOTSTRAP_DIR = Path(prefect_mltrain.__file__).parent / "bootstrap"


def default_command_compute() -> DaskCompute:
    """Compute for command jobs when none is given: a Dask cluster of threads in this process.

    The command runs in a process of its own, so worker processes would add nothing but their
    start-up (seconds: spawning them and importing Prefect in each).
    """
    return DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"processes": False, "n_workers": 1, "threads_per_worker": 8},
    )


@dataclass
class JobResult:
    """What a finished job leaves: its MLflow run, folders and registered model."""

    mlflow_run_id: str
    experiment_id: str
    flow_run_url: str
    run_dir: str
    outputs_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    model_block: str | None = None
    model_version: int | None = None


def _check_job(
    script: str | None, command: str | None, source_directory: str,
    model_path: str | None, model_name: str | None,
) -> Path:
    """Validate the job's shape before any compute starts; return the source directory."""
    if (script is None) == (command is None):
        raise ConfigurationError(
            "Give exactly one of `script` (a Python file in the source directory) or `command` "
            f"(a shell command line), but got script={script!r}, command={command!r}."
        )
    source = Path(source_directory).expanduser().resolve()
    if not source.is_dir():
        raise ConfigurationError(
            f"`source_directory`={source_directory!r} is not a directory. Fix: give the folder "
            f"that holds your training script."
        )
    if script is not None:
        path = (source / script).resolve()
        if not path.is_relative_to(source):
            raise ConfigurationError(
                f"`script`={script!r} lies outside `source_directory` '{source}', so it would not "
                f"be in the job's snapshot. Fix: move it into that folder, or make the source "
                f"directory a parent of it."
            )
        if not path.is_file():
            present = sorted(p.name for p in source.glob("*.py"))[:10]
            raise ConfigurationError(
                f"`script`={script!r} does not exist in source directory '{source}' (Python files "
                f"there: {present or 'none'}). Fix: give its path relative to the source directory."
            )
    if (model_path is None) != (model_name is None):
        raise ConfigurationError(
            "`model_path` and `model_name` go together (register the file or folder the job "
            f"writes under ./outputs as that model), but got model_path={model_path!r}, "
            f"model_name={model_name!r}."
        )
    if model_name is not None:
        check_model_name(model_name)
        if not Path(model_path or "").as_posix().startswith("outputs/"):
            raise ConfigurationError(
                f"`model_path`={model_path!r} must lie under ./outputs (only outputs are kept as "
                f"run artifacts). Fix: save the model as e.g. 'outputs/model.joblib'."
            )
    return source


def _job_argv(script: str | None, command: str | None, arguments: list[Any]) -> list[str]:
    args = [str(a) for a in arguments]
    if script is not None:
        return ["python", script, *args]
    return ["/bin/sh", "-c", " ".join([command or "", *map(shlex.quote, args)])]


def _job_pythonpath(env: TrainingEnvironment) -> str:
    inherited = env.job_environment().get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    return os.pathsep.join(p for p in (str(BOOTSTRAP_DIR), inherited) if p)


@flow(name="train-job")
def train_job(
    script: str | None = None,
    arguments: list[Any] | None = None,
    source_directory: str = ".",
    command: str | None = None,
    environment: TrainingEnvironment | str | None = None,
    compute: DaskCompute | str | None = None,
    tracking: MlflowTracking | str | None = None,
    experiment_name: str | None = None,
    display_name: str | None = None,
    tags: dict[str, str] | None = None,
    model_path: str | None = None,
    model_name: str | None = None,
    timeout_seconds: float | None = None,
    ignore_file: str | None = None,
) -> JobResult:
    """Run a training script or command as a tracked job, like Azure ML's `ScriptRunConfig`.

    The source directory is snapshotted, the environment built (or reused by content hash),
    and the command run on the Dask compute with its output streamed into this flow run's
    logs. The script gets `MLFLOW_TRACKING_URI` and `MLFLOW_RUN_ID`, so `mlflow.log_metric`
    and `mlflow.autolog()` land in the job's run; `./outputs` and `./logs` become artifacts.

    Args:
        script: Python file to run, relative to `source_directory`.
        arguments: Arguments of the script or command, e.g. `["--C", 0.5]`.
        source_directory: Folder that is snapshotted and becomes the working directory.
        command: Shell command line to run instead of `script`.
        environment: A TrainingEnvironment, a saved one's name, or None for this Python.
        compute: A DaskCompute, a saved one's name, or None for an in-process Dask cluster
            (threads: the command runs in its own process anyway).
        tracking: An MlflowTracking, a saved one's name, or None for the local store.
        experiment_name: MLflow experiment; the tracking block's when None.
        display_name: Name of the MLflow run.
        tags: Extra MLflow run tags.
        model_path: File or MLflow model folder the job writes under `outputs/`, to register.
        model_name: Registry name for `model_path` (lowercase, dashes).
        timeout_seconds: Kill the command after this many seconds.
        ignore_file: Ignore file in the source directory; `.amlignore`, else `.gitignore`.

    Returns:
        The MLflow run id, run folders, final metrics and the registered model's block name.
    """
    logger = get_run_logger()
    source = _check_job(script, command, source_directory, model_path, model_name)
    env = resolve_block(environment, TrainingEnvironment, "environment")
    env.spec()  # a spec that does not parse fails here, before any compute starts
    target = default_command_compute() if compute is None else resolve_block(compute, DaskCompute, "compute")
    target.check_reachable()
    tracker = resolve_block(tracking, MlflowTracking, "tracking")
    settings = MltrainSettings()
    info = flow_run_info()
    run_dir = settings.runs_dir / (info["id"] or uuid.uuid4().hex)
    snap = snapshot_source(source, run_dir / "snapshot", settings.snapshot_max_mb, ignore_file)
    logger.info("Snapshot: %d files, %.2f MB, fingerprint %s", snap.files, snap.bytes / 1e6, snap.fingerprint[:12])
    workdir = Path(snap.path)
    for sub in ("outputs", "logs"):
        (workdir / sub).mkdir(exist_ok=True)
    experiment_id = tracker.ensure_experiment(experiment_name)

    with target.task_runner() as runner:
        built = runner.submit(build_environment, parameters={"environment": env}).result()
        logger.info("Environment %s (%s) %s", built.content_hash[:12], built.kind, "reused" if built.cached else "built")
        run_tags = {
            **mlflow_tags(info),
            "mltrain.environment_hash": built.content_hash,
            "mltrain.source_fingerprint": snap.fingerprint,
            "mltrain.command": " ".join(_job_argv(script, command, arguments or [])),
            **(tags or {}),
        }
        with tracker.start_run(experiment_id, run_name=display_name or info["name"] or None, tags=run_tags) as run:
            run_id = run.info.run_id
            url = tracker.run_url(experiment_id, run_id)
            publish_run_links(url, run_id, tracker.ui_command(), {
                "MLflow run": run_id, "Run folder": str(run_dir), "Environment": built.content_hash[:16],
            })
            logger.info("MLflow run %s: %s", run_id, url)
            job_env = {
                **env.job_environment(),
                **tracker.environment_variables(run_id, experiment_id),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": _job_pythonpath(env),
            }
            client = tracker.client()
            argv = _job_argv(script, command, arguments or [])
            container = None
            if built.image:
                # In the image: its own PATH and Python; the MLflow store mounted at its path.
                argv = [built.python, *argv[1:]] if script is not None else argv
                artifacts = client.get_experiment(experiment_id).artifact_location
                mounts = [*local_store_paths(job_env, artifacts), str(BOOTSTRAP_DIR)]  # see BOOTSTRAP_DIR
                container = ContainerSpec(built.image, mounts, target.gpus_per_trial)
            else:
                job_env["PATH"] = f"{built.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
                if built.prefix:
                    job_env["VIRTUAL_ENV"] = built.prefix
            try:
                runner.submit(run_command, parameters={
                    "argv": argv,
                    "cwd": str(workdir),
                    "env": job_env,
                    "log_file": str(run_dir / "user_logs" / "std_log.txt"),
                    "timeout_seconds": timeout_seconds,
                    "container": container,
                }).result()
            finally:
                for sub, path in (("outputs", workdir / "outputs"), ("logs", workdir / "logs"), ("user_logs", run_dir / "user_logs")):
                    if path.is_dir() and any(path.iterdir()):
                        client.log_artifacts(run_id, str(path), sub)
            result = JobResult(
                run_id, experiment_id, info["url"], str(run_dir), str(workdir / "outputs"),
                dict(client.get_run(run_id).data.metrics),
            )
            if model_name and model_path:
                produced = workdir / model_path
                if not produced.exists():
                    made = sorted(str(p.relative_to(workdir)) for p in (workdir / "outputs").rglob("*"))[:10]
                    raise ModelRegistrationError(
                        f"`model_path`={model_path!r} was not produced by the job (it wrote: "
                        f"{made or 'nothing under outputs/'}). Fix: save the model there, or "
                        f"correct `model_path`. The run's outputs are kept; nothing was registered."
                    )
                entry = register_model(
                    tracker, model_name, run_id, model_path, detect_framework(produced),
                    flow_run_id=info["id"] or None, environment_hash=built.content_hash,
                    data_fingerprint=snap.fingerprint,
                )
                result.model_block, result.model_version = entry.document_name, entry.version
    return result
