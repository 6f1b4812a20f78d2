"""Jobs as `az ml job list/show/stream/cancel` see them: Prefect flow runs and their MLflow runs.

A job is a top-level flow run of this package's flows (`run-job-file`, `train-job`, `sweep`,
...). Its MLflow run is the one tagged with its flow run id, or with one of its subflows'.
A job started by `prefect-mltrain job run` (attached or `--detach`) carries the tag
`mltrain-cli:<id>`, and that process's pid is kept in `<home>/cli-runs/<id>.json` while it
runs: `cancel` interrupts that process (as a Ctrl-C would), which stops the job's whole
process tree and marks it Cancelled (see `prefect_mltrain.cli`). Other flow runs (from a
deployment's worker) are cancelled through Prefect, whose worker stops their infrastructure.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError

#: The flows whose top-level runs are jobs.
JOB_FLOWS = ("run-job-file", "train-job", "sweep", "train-sklearn", "train-pytorch-model", "score-image-model")
CLI_TAG = "mltrain-cli:"


@dataclass
class JobRecord:
    """What `job show` prints: the flow run, its MLflow run and what it produced."""

    id: str
    name: str
    flow: str
    state: str
    message: str | None
    started: str | None
    seconds: float | None
    parameters: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    experiment: str | None = None
    mlflow_status: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    environment_hash: str | None = None
    outputs: list[str] = field(default_factory=list)
    description: str | None = None


def cli_run_file(home: Path, tag: str) -> Path:
    """Where `job run` keeps its pid while the job whose flow runs carry `tag` runs."""
    return home / "cli-runs" / f"{tag.removeprefix(CLI_TAG)}.json"


def _flow_run_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise ConfigurationError(
            f"{job_id!r} is not a job id. Fix: pass the flow run id that `prefect-mltrain job run` "
            f"printed (the last part of its `Prefect:` URL) or one from `prefect-mltrain job list`."
        ) from None


def _read(client: Any, job_id: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_flow_run(_flow_run_id(job_id))
    except ObjectNotFound:
        raise ConfigurationError(
            f"No job has the id {job_id!r} on this Prefect server. Fix: see `prefect-mltrain job list`."
        ) from None


def _flow_names(client: Any, runs: list[Any]) -> dict[Any, str]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    ids = list({run.flow_id for run in runs})
    flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids))) if ids else []
    return {flow.id: flow.name for flow in flows}


def _subflows(client: Any, flow_run_id: uuid.UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return list(
        client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
    )


def _mlflow_run(mlflow: Any, flow_run_ids: list[str]) -> Any:
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    for flow_run_id in flow_run_ids:
        runs = mlflow.search_runs(
            experiments,
            filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'",
            order_by=["start_time ASC"],
            max_results=1,
        )
        if runs:
            return runs[0]
    return None


def _record(client: Any, mlflow: Any, run: Any, flow: str, detail: bool) -> JobRecord:
    seconds = run.total_run_time.total_seconds() if run.total_run_time else None
    if run.start_time and not (run.state and run.state.is_final()):
        seconds = time.time() - run.start_time.timestamp()
    record = JobRecord(
        id=str(run.id),
        name=run.name,
        flow=flow,
        state=run.state.name if run.state else "?",
        message=run.state.message if run.state else None,
        started=run.start_time.isoformat(timespec="seconds") if run.start_time else None,
        seconds=seconds,
        parameters=dict(run.parameters) if detail else {},
    )
    ids = [str(run.id), *(str(child.id) for child in _subflows(client, run.id))]
    found = _mlflow_run(mlflow, ids)
    if found is None:
        return record
    record.mlflow_run_id = found.info.run_id
    record.mlflow_status = found.info.status
    record.metrics = dict(found.data.metrics)
    record.environment_hash = found.data.tags.get("mltrain.environment_hash")
    record.description = found.data.tags.get("mlflow.note.content")
    if detail:
        experiment = mlflow.get_experiment(found.info.experiment_id)
        record.experiment = experiment.name if experiment else found.info.experiment_id
        record.outputs = [a.path for a in mlflow.list_artifacts(found.info.run_id)]
    return record


def list_jobs(mlflow: Any, limit: int = 20) -> list[JobRecord]:
    """The newest `limit` jobs (top-level flow runs of this package's flows), newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentTaskRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(JOB_FLOWS))),
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True)),
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )
        names = _flow_names(client, list(runs))
        return [_record(client, mlflow, run, names.get(run.flow_id, "?"), detail=False) for run in runs]


def show_job(mlflow: Any, job_id: str) -> JobRecord:
    """Everything `job show` prints about the job `job_id` (a flow run id)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = _read(client, job_id)
        return _record(client, mlflow, run, _flow_names(client, [run]).get(run.flow_id, "?"), detail=True)


def stream_job(job_id: str, emit: Callable[[str], None], poll: float = 1.0) -> str:
    """Print the job's logs (its subflows' and tasks' too) as they arrive, until it ends.

    Returns:
        The name of its final state (`Completed`, `Failed`, `Cancelled`, `Crashed`).
    """
    for line in _log_lines(job_id, poll):
        if line.startswith("\0"):
            return line[1:]
        emit(line)
    return "?"  # pragma: no cover - the generator always ends with the state


def _log_lines(job_id: str, poll: float) -> Iterator[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    seen: set[Any] = set()
    with get_client(sync_client=True) as client:
        run = _read(client, job_id)
        while True:
            ids = [run.id, *(child.id for child in _subflows(client, run.id))]
            final = run.state is not None and run.state.is_final()
            offset = 0
            while True:  # every page: a long job has more than one
                page = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)),
                    sort=LogSort.TIMESTAMP_ASC,
                    limit=200,
                    offset=offset,
                )
                for log in page:
                    if log.id not in seen:
                        seen.add(log.id)
                        yield f"{log.timestamp:%H:%M:%S} | {log.message}"
                if len(page) < 200:
                    break
                offset += len(page)
            if final:
                yield "\0" + (run.state.name if run.state else "?")
                return
            time.sleep(poll)
            run = client.read_flow_run(run.id)


def cancel_job(job_id: str, home: Path, timeout: float = 60.0) -> str:
    """Cancel the job `job_id`; return how (a sentence for the user).

    Raises:
        ConfigurationError: No such job, or it has ended already.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        run = _read(client, job_id)
        if run.state is not None and run.state.is_final():
            raise ConfigurationError(f"Job {job_id} has ended already ({run.state.name}); there is nothing to cancel.")
        pid = _cli_pid(home, run.tags)
        if pid is None:  # a deployment's run: its worker stops the infrastructure
            client.set_flow_run_state(run.id, Cancelling(message="cancelled with `prefect-mltrain job cancel`"))
            return f"Cancelling {job_id}: its worker stops it (Prefect state Cancelling)."
        os.kill(pid, signal.SIGINT)  # the `job run` process cancels as on Ctrl-C (see cli.jobs._cancelled)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final() and not run.state.is_crashed():
                return f"Cancelled {job_id}: its processes are stopped, Prefect {run.state.name}."
            time.sleep(0.5)
    raise ConfigurationError(
        f"Job {job_id} (process {pid}) did not stop within {timeout:.0f} s. Fix: `kill {pid}`; its "
        f"watchdog then marks the job Crashed."
    )


def _cli_pid(home: Path, tags: list[str]) -> int | None:
    for tag in tags:
        if tag.startswith(CLI_TAG):
            try:
                pid = int(json.loads(cli_run_file(home, tag).read_text())["pid"])
                os.kill(pid, 0)
                return pid
            except (OSError, ValueError, KeyError):
                return None
    return None


def mlflow_run_of(client: Any, job_id: str) -> str:
    """The MLflow run id of `job_id`: an MLflow run id, or the id of the job's Prefect flow run
    (the one `job run` prints, or its `train-job` subflow's), with the MLflow client `client`.

    Raises:
        ConfigurationError: Neither.
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_run(job_id).info.run_id)
    except MlflowException:
        pass
    found = _mlflow_run(client, [job_id, *_subflow_run_ids(job_id)])
    if found is not None:
        return str(found.info.run_id)
    raise ConfigurationError(
        f"No MLflow run and no job's Prefect flow run has the id {job_id!r}. Fix: pass the "
        f"`MLflow run:` id or the flow run id that `prefect-mltrain job run` printed."
    )


def _subflow_run_ids(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client

    try:
        parent = uuid.UUID(flow_run_id)
    except ValueError:
        return []
    with get_client(sync_client=True) as client:
        return [str(run.id) for run in _subflows(client, parent)]
