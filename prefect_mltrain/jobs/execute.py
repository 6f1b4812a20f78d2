"""One process of a job, as the Dask worker that runs it does it: share nothing with the flow.

Command jobs, their distributed ranks and command trials all come here. The worker unpacks
the source snapshot from its own cache (downloading it once if need be), builds or reuses
the environment in its own project home, starts the command through the one launcher
(`jobs.launch`), tees every line into the user log, and uploads `./outputs`, `./logs` and the
user log to the job's MLflow run. What comes back to the flow is a `ProcessOutcome`: figures
and names, never a path for the flow to open.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_mltrain.environments.build import build
from prefect_mltrain.jobs.launch import in_environment, job_pythonpath, run
from prefect_mltrain.jobs.pending_run import RUN_ID_FILE_VARIABLE
from prefect_mltrain.jobs.snapshot import SnapshotRef, materialize
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.process import ProcessResult
from prefect_mltrain.tracking.client import mlflow_client
from prefect_mltrain.tracking.links import run_logger

#: Seconds a process waits, after its command ended, for the MLflow run id it uploads to.
RUN_ID_WAIT = 60.0


@dataclass(frozen=True)
class JobProcess:
    """One process of a job, everything a worker needs to run it; no path of the flow's machine.

    Attributes:
        key: The job's id (its flow run id): names the worker's run folder.
        argv: The command; a script job's starts with `python`, the environment's Python.
        script: Whether `argv` is `python <script> ...` (in an image, its Python is used).
        env: The job's variables (tracking URI, run id when known, ranks' variables).
        environment: The `TrainingEnvironment`, built (or reused by hash) on the worker.
        snapshot: The source snapshot, unpacked on the worker as the working directory.
        log_name: The user log's name (`std_log.txt`, `std_log_process_<rank>.txt`).
        timeout_seconds: Kill the command after this long.
        gpus: GPUs a container asks for.
        keeps_outputs: This process uploads `./outputs` and `./logs` (one per machine of a job).
        stop_variable: The `JobStop` to poll, if any.
        run_folder: The worker-side folder under its runs dir (default: `key`).
    """

    key: str
    argv: list[str]
    script: bool
    env: dict[str, str]
    environment: Any
    snapshot: SnapshotRef
    log_name: str = "std_log.txt"
    timeout_seconds: float | None = None
    gpus: float = 0
    keeps_outputs: bool = True
    stop_variable: str | None = None
    run_folder: str | None = None


@dataclass(frozen=True)
class ProcessOutcome:
    """What one process of a job did, as the flow hears it.

    Attributes:
        result: Exit code, time, output tails.
        host: The worker's host name.
        workdir: Its working directory, on that host.
        outputs: Files it left under `outputs/` (relative to the working directory).
        environment_hash: The content hash of the environment it ran in.
        stop_reason: Why it was stopped, if it was.
    """

    result: ProcessResult
    host: str
    workdir: str
    outputs: list[str] = field(default_factory=list)
    environment_hash: str = ""
    stop_reason: str | None = None


def execute(
    process: JobProcess,
    on_line: Callable[[str, str], None],
    should_stop: Callable[[], bool] | None = None,
) -> ProcessOutcome:
    """Run `process` here: unpack, build, launch, tee the output, upload what it left.

    Args:
        process: What to run.
        on_line: Called with ("stdout" | "stderr", line) for every line of output.
        should_stop: Polled twice a second besides the job's stop variable; True kills the
            command. An exception it raises kills the command and propagates (after the upload).
    """
    logger = run_logger("prefect_mltrain.jobs")
    folder = MltrainSettings().runs_dir / (process.run_folder or process.key)
    workdir = materialize(process.snapshot, folder / "snapshot", process.env.get("MLFLOW_TRACKING_URI"))
    for sub in ("outputs", "logs"):
        (workdir / sub).mkdir(exist_ok=True)
    built = build(process.environment)
    logger.info("Environment %s (%s) %s", built.content_hash[:12], built.kind, "reused" if built.cached else "built")
    argv = list(process.argv)
    if built.image and process.script:
        argv[0] = built.python  # the image's own Python
    env = {**process.env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": job_pythonpath(process.env)}
    run_file = env.get(RUN_ID_FILE_VARIABLE)
    env, container = in_environment(built, env, [str(Path(run_file).parent)] if run_file else [], process.gpus)
    stopped_by = _stop_check(process.stop_variable, should_stop)
    log_path = folder / "user_logs" / process.log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "a", buffering=1) as log:

            def tee(stream: str, line: str) -> None:
                log.write(line + "\n")
                on_line(stream, line)

            result = run(
                argv,
                workdir,
                env,
                tee,
                container=container,
                timeout=process.timeout_seconds,
                should_stop=stopped_by.poll,
            )
    finally:
        outputs = _upload(process, workdir, log_path, logger, built.content_hash)
    return ProcessOutcome(
        result=result,
        host=socket.gethostname(),
        workdir=str(workdir),
        outputs=outputs,
        environment_hash=built.content_hash,
        stop_reason=stopped_by.reason,
    )


class _StopCheck:
    def __init__(self, poll_reason: Callable[[], str | None], extra: Callable[[], bool] | None) -> None:
        self._poll_reason = poll_reason
        self._extra = extra
        self.reason: str | None = None

    def poll(self) -> bool:
        if self._extra is not None and self._extra():
            return True
        self.reason = self._poll_reason()
        return self.reason is not None


def _stop_check(variable: str | None, extra: Callable[[], bool] | None) -> _StopCheck:
    from prefect_mltrain.jobs.stop import stop_reason_poller

    return _StopCheck(stop_reason_poller(variable) if variable else (lambda: None), extra)


def _run_id(env: dict[str, str]) -> str | None:
    """The job's MLflow run: in the variables, or in the run-id file the flow writes (one machine)."""
    if env.get("MLFLOW_RUN_ID"):
        return env["MLFLOW_RUN_ID"]
    path = env.get(RUN_ID_FILE_VARIABLE)
    deadline = time.monotonic() + RUN_ID_WAIT
    while path and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(Path(path).read_text()).get("run_id")
        time.sleep(0.1)
    return None


def _upload(process: JobProcess, workdir: Path, log_path: Path, logger: Any, environment_hash: str) -> list[str]:
    """Upload the user log (and, for the keeper, outputs/ and logs/) to the job's run; list the outputs."""
    outputs = sorted(str(p.relative_to(workdir)) for p in (workdir / "outputs").rglob("*") if p.is_file())
    run_id = _run_id(process.env)
    if run_id is None:
        logger.warning("No MLflow run to upload this process's outputs and log to; they stay in %s.", workdir)
        return outputs
    try:
        client = mlflow_client(tracking_uri=process.env.get("MLFLOW_TRACKING_URI"))
        if process.keeps_outputs:
            client.set_tag(run_id, "mltrain.environment_hash", environment_hash)
            for sub in ("outputs", "logs"):
                if any((workdir / sub).iterdir()):
                    client.log_artifacts(run_id, str(workdir / sub), sub)
        if log_path.exists():
            client.log_artifact(run_id, str(log_path), "user_logs")
    except Exception as exc:  # noqa: BLE001 - the job's own result matters more; say what was not kept
        logger.warning("Could not upload the outputs and log of %s to MLflow run %s: %s", workdir, run_id, exc)
    return outputs
