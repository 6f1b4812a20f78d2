"""`train_job`: Azure ML's command job. Snapshot, environment, command on Dask, tracked in MLflow."""

from __future__ import annotations

import shlex
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.blocks.model import RegisteredModel, check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.errors import ConfigurationError, JobFailedError, ModelRegistrationError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.jobs.distribution import Slot, check_distribution, launcher_environment, place, worker_host
from prefect_mltrain.jobs.execute import JobProcess, ProcessOutcome
from prefect_mltrain.jobs.pending_run import RUN_ID_FILE_VARIABLE, PendingRun, starts_before_run
from prefect_mltrain.jobs.snapshot import SnapshotRef, archive_path, pack_source
from prefect_mltrain.jobs.stop import JobStop
from prefect_mltrain.registry.frameworks import detect_framework
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.net import free_port
from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.register import register_model
from prefect_mltrain.tracking.links import TrackedRun, flow_run_info, mlflow_tags, publish_run_links


@dataclass(kw_only=True)
class JobResult(TrackedRun):
    """What a finished job leaves: its MLflow run, registered model, and where it ran.

    `run_dir` and `outputs_dir` are folders on the worker that ran the job (rank 0's), which is
    this machine for the default compute; the outputs themselves are the MLflow run's
    `outputs/` artifacts wherever it ran (`prefect-mltrain job download`).
    """

    run_dir: str
    outputs_dir: str


def _check_job(
    script: str | None,
    command: str | None,
    source_directory: str,
    model_path: str | None,
    model_name: str | None,
    timeout_seconds: float | None = None,
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
    if timeout_seconds is not None and (isinstance(timeout_seconds, bool) or not timeout_seconds > 0):
        raise ConfigurationError(
            f"`timeout_seconds`={timeout_seconds!r} must be a positive number of seconds. Fix: e.g. "
            f"3600, or none for no limit."
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


def _submit(runner: Any, slots: list[Slot], kind: str, per_instance: int, process: JobProcess) -> dict[Any, int]:
    """Start the command once per slot, all at once; return each rank's future."""
    if kind == "single":
        return {runner.submit(run_command, parameters={"process": process}): 0}
    master = worker_host(slots[0].worker)
    # Asked on the rank-0 worker, on every interface: the port must be free where MASTER_ADDR is.
    port = runner.client.run(free_port, "", workers=[slots[0].worker])[slots[0].worker]
    futures = {}
    for slot in slots:
        rank = replace(
            process,
            env={**process.env, **launcher_environment(slot, len(slots), per_instance, master, port, kind)},
            log_name=f"std_log_process_{slot.rank:02d}.txt",
            keeps_outputs=slot.local_rank == 0,  # one per instance: its machine's outputs and logs
        )
        with dask.annotate(workers=[slot.worker], allow_other_workers=False):
            future = runner.submit(
                run_command.with_options(task_run_name=f"run-command-rank-{slot.rank}"),
                parameters={"process": rank},
            )
        futures[future] = slot.rank
    return futures


def _wait(futures: dict[Any, int], stop: JobStop) -> ProcessOutcome:
    """Wait for every rank; return rank 0's outcome, or fail with the first rank that failed, the others stopped."""
    if len(futures) == 1:
        return next(iter(futures)).result()
    failures: list[tuple[int, JobFailedError]] = []
    outcomes: dict[int, ProcessOutcome] = {}
    for future in as_completed(list(futures)):
        try:
            outcomes[futures[future]] = future.result()
        except JobFailedError as exc:
            stop.stop("another process of this distributed job failed")  # the others are killed, not left to hang
            failures.append((futures[future], exc))
    if failures:
        rank, first = failures[0]  # the first to fail is the cause; the rest were stopped
        raise JobFailedError(
            f"Rank {rank} of {len(futures)} failed first (ranks failed: {sorted(r for r, _ in failures)}). {first}",
            exit_code=first.exit_code,
            stderr_tail=first.stderr_tail,
        )
    return outcomes[0]


def _run_ranks(
    runner: Any,
    stop: JobStop,
    pending: PendingRun,
    tracker: MlflowTracking,
    process: JobProcess,
    kind: str,
    instance_count: int,
    per_instance: int,
) -> tuple[str, str, ProcessOutcome]:
    """Start every rank, then the MLflow run (where the job did not wait for it), link the run
    and wait for the ranks.

    Returns:
        The MLflow run id, its experiment id and rank 0's outcome.
    """
    stop.attach(runner.client)
    try:
        ranks = _submit(runner, _slots(runner, kind, instance_count, per_instance), kind, per_instance, process)
        pending.start()
        try:
            run_id = pending.run_id.result()
        except Exception:
            for future in ranks:  # killed through the stop variable; the run's error is the cause
                future.wait()
            raise
        experiment_id = pending.experiment_id.result()
        url = tracker.run_url(experiment_id, run_id)
        publish_run_links(
            url, run_id, tracker.ui_command(), {"MLflow run": run_id, "Snapshot": process.snapshot.fingerprint[:16]}
        )
        get_run_logger().info("MLflow run %s: %s", run_id, url)
        return run_id, experiment_id, _wait(ranks, stop)
    finally:
        stop.close()


def _result(client: Any, flow_run_url: str, run_id: str, experiment_id: str, lead: ProcessOutcome) -> JobResult:
    """The job's result from rank 0's outcome and the run's final metrics (no model yet)."""
    return JobResult(
        mlflow_run_id=run_id,
        experiment_id=experiment_id,
        flow_run_url=flow_run_url,
        run_dir=str(Path(lead.workdir).parent),
        outputs_dir=str(Path(lead.workdir) / "outputs"),
        metrics=dict(client.get_run(run_id).data.metrics),
    )


def _register(
    tracker: MlflowTracking,
    client: Any,
    result: JobResult,
    model_name: str,
    model_path: str,
    lead: ProcessOutcome,
    flow_run_id: str | None,
    data_fingerprint: str,
) -> RegisteredModel:
    """Register the model that rank 0 left at `model_path` as `model_name`; return its block."""
    return register_model(
        tracker,
        model_name,
        result.mlflow_run_id,
        model_path,
        _model_framework(client, result.mlflow_run_id, model_path, lead.outputs),
        flow_run_id=flow_run_id,
        environment_hash=lead.environment_hash,
        data_fingerprint=data_fingerprint,
    )


def _model_framework(client: Any, run_id: str, model_path: str, outputs: list[str]) -> str:
    """The framework of the model the job left at `model_path`, read from the run's artifacts.

    Raises:
        ModelRegistrationError: The job did not write it; the message lists what it wrote.
    """
    wanted = Path(model_path).as_posix().rstrip("/")
    if wanted in outputs:
        return detect_framework(Path(wanted))  # a file: told by its suffix
    if not any(out.startswith(wanted + "/") for out in outputs):
        raise ModelRegistrationError(
            f"`model_path`={model_path!r} was not produced by the job (it wrote: "
            f"{outputs[:10] or 'nothing under outputs/'}). Fix: save the model there, or "
            f"correct `model_path`. The run's outputs are kept; nothing was registered."
        )
    if f"{wanted}/MLmodel" not in outputs:
        raise ModelRegistrationError(
            f"Model folder `model_path`={model_path!r} has no MLmodel file, so it is not an MLflow model. "
            f"Fix: save it with `mlflow.<flavor>.save_model(model, '{wanted}')`, or point `model_path` at a "
            f".joblib/.pkl/.pt file. The run's outputs are kept; nothing was registered."
        )
    with tempfile.TemporaryDirectory() as tmp:  # its MLmodel file tells the flavor
        return detect_framework(Path(client.download_artifacts(run_id, f"{wanted}/MLmodel", tmp)).parent)


def _publish_snapshot(client: Any, run_id: str, snap: SnapshotRef) -> SnapshotRef:
    """Upload the snapshot archive to the run, for workers on other machines; return where it is."""
    client.log_artifact(run_id, str(archive_path(snap.fingerprint)), "snapshot")
    return replace(snap, artifact_uri=f"runs:/{run_id}/snapshot/{snap.fingerprint}.tar.gz")


# long: its docstring is the user-facing parameter documentation; the code is under 80 lines
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
    source = _check_job(script, command, source_directory, model_path, model_name, timeout_seconds)
    kind, per_instance = check_distribution(distribution, instance_count)
    env = resolve_block(environment, TrainingEnvironment, "environment").portable()
    env.spec()  # a spec that does not parse fails here, before any compute starts
    target = DaskCompute.in_process() if compute is None else resolve_block(compute, DaskCompute, "compute")
    target.check_reachable()
    tracker = resolve_block(tracking, MlflowTracking, "tracking").pinned()
    info = flow_run_info()
    key = info["id"] or uuid.uuid4().hex
    argv = _job_argv(script, command, arguments or [])
    # Workers on this machine share its snapshot cache; others download the snapshot from the run.
    remote = not target.runs_on_this_machine()
    # A Python job on this machine starts before its MLflow run exists (it reads the run id from
    # a file when it imports mlflow); any other job gets MLFLOW_RUN_ID from the start.
    early = starts_before_run(script, command) and not remote and not env.is_container
    stop = JobStop(f"mltrain-stop-{key}")
    run_file = MltrainSettings().runs_dir / key / "mlflow" / "run.json"
    with PendingRun(tracker, experiment_name, display_name or info["name"] or None, run_file, stop.stop) as pending:
        if not early:
            pending.start()
        snap = pack_source(source, MltrainSettings().snapshot_max_mb, ignore_file)
        logger.info("Snapshot: %d files, %.2f MB, fingerprint %s", snap.files, snap.bytes / 1e6, snap.fingerprint[:12])
        pending.create(
            {
                **mlflow_tags(info),
                "mltrain.source_fingerprint": snap.fingerprint,
                "mltrain.command": " ".join(argv),
                **(tags or {}),
            }
        )
        job_env = {**env.job_environment(), **tracker.environment_variables()}
        if early:
            job_env[RUN_ID_FILE_VARIABLE] = str(pending.run_file)  # read on `import mlflow`
        else:
            job_env |= tracker.environment_variables(pending.run_id.result(), pending.experiment_id.result())
            if remote:
                snap = _publish_snapshot(tracker.client(), pending.run_id.result(), snap)
        process = JobProcess(
            key=key,
            argv=argv,
            script=script is not None,
            env=job_env,
            environment=env,
            snapshot=snap,
            timeout_seconds=timeout_seconds,
            gpus=target.gpus_per_trial,
            stop_variable=stop.name,
        )
        with target.task_runner() as runner:
            run_id, experiment_id, lead = _run_ranks(
                runner, stop, pending, tracker, process, kind, instance_count, per_instance
            )
        client = tracker.client()
        result = _result(client, info["url"], run_id, experiment_id, lead)
        if model_name and model_path:
            entry = _register(
                tracker, client, result, model_name, model_path, lead, info["id"] or None, snap.fingerprint
            )
            result.model_block, result.model_version = entry.document_name, entry.version
    return result
