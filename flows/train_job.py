"""`train_job`: Azure ML's command job. Snapshot, environment, command on Dask, tracked in MLflow."""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.blocks.model import check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.environments.build import BuiltEnvironment, cached_build
from prefect_mltrain.errors import ConfigurationError, JobFailedError, ModelRegistrationError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.jobs.containers import local_store_paths
from prefect_mltrain.jobs.distribution import Slot, check_distribution, launcher_environment, place, worker_host
from prefect_mltrain.jobs.launch import in_environment, job_pythonpath
from prefect_mltrain.jobs.pending_run import RUN_ID_FILE_VARIABLE, PendingRun, starts_before_run, write_atomically
from prefect_mltrain.jobs.snapshot import snapshot_source
from prefect_mltrain.registry.frameworks import detect_framework
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.net import free_port
from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.environment import build_environment
from prefect_mltrain.tasks.register import register_model
from prefect_mltrain.tracking.links import TrackedRun, flow_run_info, mlflow_tags, publish_run_links


@dataclass(kw_only=True)
class JobResult(TrackedRun):
    """What a finished job leaves: its MLflow run, folders and registered model."""

    run_dir: str
    outputs_dir: str


def _check_job(
    script: str | None,
    command: str | None,
    source_directory: str,
    model_path: str | None,
    model_name: str | None,
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


def _slots(runner: Any, kind: str, instance_count: int, per_instance: int) -> list[Slot]:
    if kind == "single":
        return [Slot("", 0, 0, 0)]
    workers = runner.client.scheduler_info(n_workers=-1)["workers"]
    return place({addr: w["nthreads"] for addr, w in workers.items()}, instance_count, per_instance)


def _environment(runner: Any, env: TrainingEnvironment, target: DaskCompute) -> BuiltEnvironment:
    """The built environment: a cache hit read here when the workers share this machine, else a task."""
    if target.runs_on_this_machine():
        built = cached_build(env)
        if built is not None:
            return built  # no task run for reading one small file
    return runner.submit(build_environment, parameters={"environment": env}).result()


def _submit(
    runner: Any, slots: list[Slot], kind: str, per_instance: int, parameters: dict[str, Any], logs: Path
) -> dict[Any, int]:
    """Start the command once per slot, all at once; return each rank's future."""
    if kind == "single":
        return {runner.submit(run_command, parameters={**parameters, "log_file": str(logs / "std_log.txt")}): 0}
    master = worker_host(slots[0].worker)
    # Asked on the rank-0 worker, on every interface: the port must be free where MASTER_ADDR is.
    port = runner.client.run(free_port, "", workers=[slots[0].worker])[slots[0].worker]
    futures = {}
    for slot in slots:
        env = {**parameters["env"], **launcher_environment(slot, len(slots), per_instance, master, port, kind)}
        with dask.annotate(workers=[slot.worker], allow_other_workers=False):
            future = runner.submit(
                run_command.with_options(task_run_name=f"run-command-rank-{slot.rank}"),
                parameters={**parameters, "env": env, "log_file": str(logs / f"std_log_process_{slot.rank:02d}.txt")},
            )
        futures[future] = slot.rank
    return futures


def _wait(futures: dict[Any, int], stop_file: Path) -> None:
    """Wait for every rank; fail with the first rank that failed, the others stopped."""
    if len(futures) == 1:
        next(iter(futures)).result()
        return
    failures: list[tuple[int, JobFailedError]] = []
    for future in as_completed(list(futures)):
        try:
            future.result()
        except JobFailedError as exc:
            if not failures:  # the others are killed, not left to hang
                write_atomically(stop_file, "another process of this distributed job failed")
            failures.append((futures[future], exc))
    if failures:
        rank, first = failures[0]  # the first to fail is the cause; the rest were stopped
        raise JobFailedError(
            f"Rank {rank} of {len(futures)} failed first (ranks failed: {sorted(r for r, _ in failures)}). {first}",
            exit_code=first.exit_code,
            stderr_tail=first.stderr_tail,
        )


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
    distribution: dict[str, Any] | None = None,
    instance_count: int = 1,
) -> JobResult:
    """Run a training script or command as a tracked job, like Azure ML's `ScriptRunConfig`.

    The source directory is snapshotted, the environment built (or reused by content hash),
    and the command run on the Dask compute with its output streamed into this flow run's
    logs. The script gets `MLFLOW_TRACKING_URI` and `MLFLOW_RUN_ID`, so `mlflow.log_metric`
    and `mlflow.autolog()` land in the job's run; `./outputs` and `./logs` become artifacts.

    The MLflow run is created while the job starts. A Python job (`script`, or a `command`
    of `python ...` steps; see `starts_before_run`) does not wait for it: `MLFLOW_RUN_ID` and
    `MLFLOW_EXPERIMENT_ID` appear in its `os.environ` when it imports mlflow, which waits
    for the run if need be (`MLTRAIN_RUN_ID_TIMEOUT` seconds, 120 by default). Any other
    command starts once the run exists, with `MLFLOW_RUN_ID` set from the start.

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
        distribution: Run several processes, as Azure ML's `{"type": "pytorch",
            "process_count_per_instance": N}` (or `mpi`): each gets WORLD_SIZE, RANK,
            LOCAL_RANK, MASTER_ADDR and MASTER_PORT, one process per slot on the Dask workers,
            and its own log `user_logs/std_log_process_<rank>.txt`.
        instance_count: Instances (one Dask worker each) that run `process_count_per_instance`.

    Returns:
        The MLflow run id, run folders, final metrics and the registered model's block name.
    """
    logger = get_run_logger()
    source = _check_job(script, command, source_directory, model_path, model_name)
    if timeout_seconds is not None and (isinstance(timeout_seconds, bool) or not timeout_seconds > 0):
        raise ConfigurationError(
            f"`timeout_seconds`={timeout_seconds!r} must be a positive number of seconds. Fix: e.g. "
            f"3600, or none for no limit."
        )
    kind, per_instance = check_distribution(distribution, instance_count)
    env = resolve_block(environment, TrainingEnvironment, "environment")
    env.spec()  # a spec that does not parse fails here, before any compute starts
    target = DaskCompute.in_process() if compute is None else resolve_block(compute, DaskCompute, "compute")
    target.check_reachable()
    tracker = resolve_block(tracking, MlflowTracking, "tracking")
    settings = MltrainSettings()
    info = flow_run_info()
    run_dir = settings.runs_dir / (info["id"] or uuid.uuid4().hex)
    argv = _job_argv(script, command, arguments or [])
    stop_file = run_dir / "stop-job"  # its appearance kills the command (see run_command)
    # The MLflow run is made on a thread; a Python job starts without waiting for it.
    early = starts_before_run(script, command)
    with PendingRun(
        tracker, experiment_name, display_name or info["name"] or None, run_dir / "mlflow" / "run.json", stop_file
    ) as pending:
        if not early or env.is_container:  # they need the run (an image: its experiment) to start
            pending.start()
        snap = snapshot_source(source, run_dir / "snapshot", settings.snapshot_max_mb, ignore_file)
        logger.info("Snapshot: %d files, %.2f MB, fingerprint %s", snap.files, snap.bytes / 1e6, snap.fingerprint[:12])
        workdir = Path(snap.path)
        for sub in ("outputs", "logs"):
            (workdir / sub).mkdir(exist_ok=True)

        with target.task_runner() as runner:
            slots = _slots(runner, kind, instance_count, per_instance)
            built = _environment(runner, env, target)
            logger.info(
                "Environment %s (%s) %s", built.content_hash[:12], built.kind, "reused" if built.cached else "built"
            )
            pending.create(
                {
                    **mlflow_tags(info),
                    "mltrain.environment_hash": built.content_hash,
                    "mltrain.source_fingerprint": snap.fingerprint,
                    "mltrain.command": " ".join(argv),
                    **(tags or {}),
                }
            )
            job_env = {
                **env.job_environment(),
                **tracker.environment_variables(),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": job_pythonpath(env.job_environment()),
            }
            if early:
                job_env[RUN_ID_FILE_VARIABLE] = str(pending.run_file)  # read on `import mlflow`
            else:  # e.g. a shell line using $MLFLOW_RUN_ID: it starts once the run exists
                job_env |= tracker.environment_variables(pending.run_id.result(), pending.experiment_id.result())
            mounts: list[str] = []
            if built.image:
                # In the image: its own PATH and Python; the MLflow store mounted at its path.
                argv = [built.python, *argv[1:]] if script is not None else argv
                artifacts = tracker.client().get_experiment(pending.experiment_id.result()).artifact_location
                mounts = [*local_store_paths(job_env, artifacts), str(pending.run_file.parent)]
            job_env, container = in_environment(built, job_env, mounts, target.gpus_per_trial)
            ranks = _submit(
                runner,
                slots,
                kind,
                per_instance,
                {
                    "argv": argv,
                    "cwd": str(workdir),
                    "env": job_env,
                    "timeout_seconds": timeout_seconds,
                    "container": container,
                    "stop_file": str(stop_file),
                },
                run_dir / "user_logs",
            )
            # Once the command is up (run_command opens its log just before starting it): this
            # process's threads share one GIL, and importing mlflow would slow that start down.
            pending.start(after=lambda: any((run_dir / "user_logs").glob("std_log*.txt")))
            try:
                run_id = pending.run_id.result()
            except Exception:
                for future in ranks:  # killed through the stop file; the run's error is the cause
                    future.wait()
                raise
            experiment_id = pending.experiment_id.result()
            url = tracker.run_url(experiment_id, run_id)
            publish_run_links(
                url,
                run_id,
                tracker.ui_command(),
                {
                    "MLflow run": run_id,
                    "Run folder": str(run_dir),
                    "Environment": built.content_hash[:16],
                },
            )
            logger.info("MLflow run %s: %s", run_id, url)
            client = tracker.client()
            try:
                _wait(ranks, stop_file)
            finally:
                for sub, path in (
                    ("outputs", workdir / "outputs"),
                    ("logs", workdir / "logs"),
                    ("user_logs", run_dir / "user_logs"),
                ):
                    if path.is_dir() and any(path.iterdir()):
                        client.log_artifacts(run_id, str(path), sub)
            result = JobResult(
                mlflow_run_id=run_id,
                experiment_id=experiment_id,
                flow_run_url=info["url"],
                run_dir=str(run_dir),
                outputs_dir=str(workdir / "outputs"),
                metrics=dict(client.get_run(run_id).data.metrics),
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
                    tracker,
                    model_name,
                    run_id,
                    model_path,
                    detect_framework(produced),
                    flow_run_id=info["id"] or None,
                    environment_hash=built.content_hash,
                    data_fingerprint=snap.fingerprint,
                )
                result.model_block, result.model_version = entry.document_name, entry.version
    return result
