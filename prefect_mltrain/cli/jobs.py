"""`prefect-mltrain job ...`: run job files (attached, detached, cancelled with Ctrl-C), list,
show, stream, cancel and download jobs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_mltrain.cli.common import block_loader, connect
from prefect_mltrain.cli.logs import console_without_tracebacks
from prefect_mltrain.errors import MltrainError
from prefect_mltrain.jobs.records import mlflow_run_of
from prefect_mltrain.settings import MltrainSettings


def _job_run(args: argparse.Namespace) -> int:
    if not _debug(args):
        console_without_tracebacks()  # before Prefect is imported, for this process and its workers
    from prefect_mltrain.flows.run_job_file import check_job_file  # imports Prefect; starts nothing

    # The whole file is checked before any server, flow run or environment starts: every
    # problem is raised at once (JobFileError), and `main` prints one `error:` line for each.
    load_block = block_loader()
    check_job_file(args.file, args.set, args.resume, load_block)
    if args.detach:
        return _detach(args)
    connect()
    if load_block is None:  # the saved blocks it names, now that the server runs; still before any run
        from prefect_mltrain.blocks._load import resolve_block

        check_job_file(args.file, args.set, args.resume, resolve_block)
    from prefect_mltrain.flows import use_fast_heartbeats
    from prefect_mltrain.flows.run_job_file import run_job_file
    from prefect_mltrain.flows.sweep import SweepResult

    use_fast_heartbeats()

    with _watched() as tag:
        from prefect import tags

        # Ctrl-C (and `job cancel`, which sends SIGINT) ends the job from here, before Prefect's
        # engine sees a KeyboardInterrupt and calls the run Crashed for a while.
        previous = signal.signal(signal.SIGINT, lambda *_: _cancelled(tag))
        try:
            with tags(tag):
                state = run_job_file(args.file, args.set, resume=args.resume, return_state=True)
        except KeyboardInterrupt:
            return _cancelled(tag)
        finally:
            signal.signal(signal.SIGINT, previous)
    if not state.is_completed():
        return _failed(state, _debug(args))
    result = state.result()
    if isinstance(result, SweepResult) and result.best_trial is None and result.trials:
        return _no_trial_completed(result)
    if isinstance(result, SweepResult):
        print(
            f"\nSweep {result.name}: best trial {result.best_trial}, {result.best_value} with {result.best_params}\n"
            f"MLflow parent run: {result.mlflow_parent_run_id}\nPrefect:    {result.flow_run_url}"
        )
    else:
        print(
            f"\nMLflow run: {result.mlflow_run_id}\nOutputs:    {result.outputs_dir}\nPrefect:    {result.flow_run_url}"
        )
    return 0


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False))


def _detach(args: argparse.Namespace) -> int:
    """`job run --detach`: the same command in the background, its output to a log file."""
    log = MltrainSettings().home_dir / "detached" / f"{Path(args.file).stem}-{int(time.time())}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "prefect_mltrain.cli", "job", "run", args.file]
    for item in args.set:
        argv += ["--set", item]
    if args.resume:
        argv.append("--resume")
    if _debug(args):
        argv.append("--debug")
    connect()
    tag = _new_tag()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, _TAG_VARIABLE: tag},
        )
    job_id = _first_flow_run(tag, proc)
    print(
        f"Submitted: job {job_id or '(not started yet)'} (pid {proc.pid}); its output goes to {log}.\n"
        f"Follow it: prefect-mltrain job stream {job_id or '<id>'}   Cancel it: prefect-mltrain job cancel "
        f"{job_id or '<id>'}"
    )
    return 0


def _failed(state: Any, debug: bool) -> int:
    """A job that started and then failed: one `error:` line, and where to look; exit 1 (2 for bad input)."""
    import traceback

    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from prefect_mltrain.errors import ConfigurationError

    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - a state whose result was not kept: say what is known
        error = exc
    job_id = state.state_details.flow_run_id
    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    if debug and isinstance(error, BaseException):
        traceback.print_exception(error)
    if isinstance(error, BaseException):
        text = str(error) if isinstance(error, MltrainError) else f"{type(error).__name__}: {error}"
    else:
        text = state.message or state.name
    print(
        f"error: {text}\n"
        f"Job {job_id} ended {state.name}. See: prefect-mltrain job show {job_id}\n"
        f"Prefect:    {ui}/runs/flow-run/{job_id}",
        file=sys.stderr,
    )
    return 2 if isinstance(error, ConfigurationError) else 1


def _no_trial_completed(result: Any) -> int:
    """A sweep whose every trial failed (or stopped early): one `error:` line and where to look; exit 1."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    states = [row["state"] for row in result.trials]
    failed = next((row for row in result.trials if row["state"] == "FAIL" and row.get("flow_run_id")), None)
    print(
        f"error: no trial of sweep {result.name} completed ({states.count('FAIL')} failed, "
        f"{states.count('PRUNED')} stopped early), so it has no best trial. The trials' logs say why"
        + (f", e.g. trial {failed['trial']}: {ui}/runs/flow-run/{failed['flow_run_id']}" if failed else "")
        + f".\nPrefect:    {result.flow_run_url}",
        file=sys.stderr,
    )
    return 1


_TAG_VARIABLE = "MLTRAIN_CLI_TAG"  # from `job run --detach` to the `job run` it starts


def _new_tag() -> str:
    from prefect_mltrain.jobs.records import CLI_TAG

    return f"{CLI_TAG}{uuid.uuid4().hex[:12]}"


def _first_flow_run(tag: str, proc: subprocess.Popen, timeout: float = 30.0) -> str | None:  # type: ignore[type-arg]
    """The id of the first flow run tagged `tag` (the detached job's), once it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and proc.poll() is None:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            if runs:
                return str(runs[0].id)
            time.sleep(0.25)
    return None


@contextlib.contextmanager
def _watched() -> Iterator[str]:
    """A tag for the flow runs of this `job run`, and a watchdog that ends them if this process dies.

    The job's own process dies with this one anyway (see `jobs.supervisor`); the watchdog also
    ends the flow runs that live only in this process (the job file's, a sweep's) as Crashed.
    """
    from prefect_mltrain.jobs.launch import SUPERVISOR
    from prefect_mltrain.jobs.records import cli_run_file

    tag = os.environ.pop(_TAG_VARIABLE, "") or _new_tag()
    pid_file = cli_run_file(MltrainSettings().home_dir, tag)  # how `job cancel` finds this process
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps({"pid": os.getpid()}))
    watchdog = subprocess.Popen(
        [sys.executable, str(SUPERVISOR), "--parent", str(os.getpid()), "--watch-tag", tag]
        + ["--tracking-uri", _tracking_uri()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(MltrainSettings().home_dir / "watchdog.log", "ab"),  # noqa: SIM115 - the child keeps it
        start_new_session=True,
    )
    try:
        yield tag
    finally:
        pid_file.unlink(missing_ok=True)
        if watchdog.stderr is not None:
            watchdog.stderr.close()


def _tracking_uri() -> str:
    from prefect_mltrain.blocks import MlflowTracking

    return MlflowTracking().resolved_tracking_uri()


def _cancelled(tag: str) -> int:
    """Ctrl-C on an attached `job run`: the job's processes are stopped, its runs marked, one line said."""
    from prefect_mltrain.jobs.supervisor import end_tagged_runs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    ended = end_tagged_runs(tag, "Cancelled", "cancelled with Ctrl-C on `prefect-mltrain job run`", _tracking_uri())
    print(
        f"\nCancelled: {len(ended)} flow run(s) marked Cancelled, their MLflow runs KILLED; the job's processes are stopped.",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    # Now, not at interpreter exit: that would wait for the job's thread, and so for the job. This
    # process's end is what stops the job (its supervisor kills the job's process group).
    os._exit(130)


def _job_download(args: argparse.Namespace) -> int:
    connect()
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    run_id = mlflow_run_of(client, args.run_id)
    target = Path(args.output or args.run_id).resolve()
    target.mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(run_id, args.path, str(target))
    print(local)
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _job_list(args: argparse.Namespace) -> int:
    connect()
    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.jobs.records import list_jobs

    print(f"{'ID':<36}  {'NAME':<24} {'FLOW':<14} {'STATE':<10} {'TIME':>5}  METRICS")
    for job in list_jobs(MlflowTracking().client(), args.limit):
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(job.metrics.items())[:2])
        print(
            f"{job.id:<36}  {job.name[:24]:<24} {job.flow[:14]:<14} {job.state[:10]:<10} "
            f"{_duration(job.seconds):>5}  {metrics}"
        )
    return 0


def _job_show(args: argparse.Namespace) -> int:
    connect()
    from dataclasses import asdict

    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.jobs.records import show_job

    print(json.dumps(asdict(show_job(MlflowTracking().client(), args.id)), indent=2, default=str))
    return 0


def _job_stream(args: argparse.Namespace) -> int:
    connect()
    from prefect_mltrain.jobs.records import stream_job

    state = stream_job(args.id, lambda line: print(line, flush=True))
    print(f"Job {args.id} ended: {state}", flush=True)
    return 0 if state == "Completed" else 1


def _job_cancel(args: argparse.Namespace) -> int:
    connect()
    from prefect_mltrain.jobs.records import cancel_job

    print(cancel_job(args.id, MltrainSettings().home_dir))
    return 0
