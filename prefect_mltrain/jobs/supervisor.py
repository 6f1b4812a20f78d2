"""The supervisor between a job's launcher and its process: the job never outlives its flow.

`jobs.launch.run` starts every command, rank and command trial as
`python supervisor.py --parent PID [...] -- ARGV`, in a new session whose leader is this
supervisor. The supervisor starts ARGV in its own process group and waits for it; its exit is
ARGV's (a signal death is passed on as the same signal). It asks Linux for a signal when its
parent dies (`PR_SET_PDEATHSIG`), and also checks its parent's pid once a second (other
systems). When the parent is gone (the flow's process, or the Dask worker of a trial, was
killed), the supervisor:

1. starts a detached cleaner (`--cleanup`) that removes the job's container, ends the job's
   MLflow run as KILLED and marks its Prefect flow run Crashed (unless it already ended, e.g.
   Cancelled after a Ctrl-C), each only if it is still running;
2. kills its whole process group: the script and everything the script started.

The normal paths (exit, timeout, stop file) are the launcher's: it kills the group itself.

`--watch-tag TAG` is the other mode: the watchdog of an attached `prefect-mltrain job run`.
It waits for that process to exit and then ends the flow runs tagged TAG that are still
unfinished (Crashed; their MLflow runs KILLED): the job file's and a sweep's flow runs live
only in that process. A Ctrl-C there marks them Cancelled first (`end_tagged_runs`). This file is run by path and imports nothing of
prefect_mltrain and only the standard library until the cleaner runs, so it starts in tens of
milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

_ORPHAN_SIGNAL = signal.SIGUSR2  # what PR_SET_PDEATHSIG sends; a user's SIGTERM reaches the job itself
_PR_SET_PDEATHSIG = 1
#: The variables the cleaner reads: where the job's MLflow run is and which flow run owns it.
RUN_ID_FILE = "MLTRAIN_RUN_ID_FILE"


def _parent_death_signal(sig: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the once-a-second parent check still notices


def _orphaned(args: argparse.Namespace) -> None:
    """The parent died: clean up in a detached process, then kill this whole group."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID",)}
    env.pop("PYTHONPATH", None)  # the job's bootstrap would activate the run in the cleaner
    cleaner = [sys.executable, os.path.abspath(__file__), "--cleanup", "--parent", str(args.parent)]
    for flag in ("container", "flow_run_id"):
        if getattr(args, flag):
            cleaner += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    run_id = os.environ.get("MLFLOW_RUN_ID") or ""
    if run_id:
        cleaner += ["--mlflow-run-id", run_id]
    try:
        subprocess.Popen(
            cleaner,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _run_id_from_file() -> str:
    path = os.environ.get(RUN_ID_FILE)
    if not path:
        return ""
    try:
        with open(path) as handle:
            return json.load(handle).get("run_id") or ""
    except (OSError, ValueError):
        return ""


def cleanup(container: str | None, mlflow_run_id: str, flow_run_id: str | None) -> None:
    """End what a job whose flow died leaves behind (each step only if it is still running)."""
    reason = "the process that supervised this job died (killed or crashed); the job was stopped"
    if container:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    run_id = mlflow_run_id or _run_id_from_file()
    if run_id and os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            from mlflow.tracking import MlflowClient

            mlflow = MlflowClient()
            if mlflow.get_run(run_id).info.status == "RUNNING":
                mlflow.set_tag(run_id, "mltrain.ended_by", reason)
                mlflow.set_terminated(run_id, "KILLED")
        except Exception as exc:  # noqa: BLE001 - best effort; say why on stderr (a log file)
            print(f"prefect-mltrain supervisor: could not end MLflow run {run_id}: {exc}", file=sys.stderr)
    if flow_run_id and os.environ.get("PREFECT_API_URL"):
        try:
            from prefect.client.orchestration import get_client
            from prefect.states import Crashed

            with get_client(sync_client=True) as prefect:
                state = prefect.read_flow_run(uuid.UUID(flow_run_id)).state
                if state is None or not state.is_final():
                    prefect.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
        except Exception as exc:  # noqa: BLE001
            print(f"prefect-mltrain supervisor: could not end flow run {flow_run_id}: {exc}", file=sys.stderr)


def end_tagged_runs(tag: str, state: str, reason: str, tracking_uri: str) -> list[str]:
    """Give every unfinished Prefect flow run tagged `tag` the `state` (`"Crashed"` or
    `"Cancelled"`) with `reason`, and end the MLflow runs (in `tracking_uri`) tagged with their
    ids as KILLED.

    Returns:
        The ids of the flow runs it ended.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Cancelled, Crashed

    make = {"Crashed": Crashed, "Cancelled": Cancelled}[state]
    ended: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
        for run in runs:
            # A Ctrl-C reaches the engine first, which calls its run Crashed: that becomes Cancelled.
            if run.state is None or not run.state.is_final() or (state == "Cancelled" and run.state.is_crashed()):
                client.set_flow_run_state(run.id, make(message=reason), force=True)
                ended.append(str(run.id))
    if ended:
        _kill_mlflow_runs(ended, reason, tracking_uri)
    return ended


def _kill_mlflow_runs(flow_run_ids: list[str], reason: str, tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    for flow_run_id in flow_run_ids:  # MLflow's search has no IN for tags
        for run in client.search_runs(
            experiments, filter_string=f"attributes.status = 'RUNNING' and tags.`prefect.flow_run_id` = '{flow_run_id}'"
        ):
            client.set_tag(run.info.run_id, "mltrain.ended_by", reason)
            client.set_terminated(run.info.run_id, "KILLED")


def watch(parent: int, tag: str, tracking_uri: str) -> int:
    """Wait for `parent` (a `prefect-mltrain job run`) to exit; then end what it left running."""
    _parent_death_signal(signal.SIGTERM)  # only a backstop: the loop below sees the parent go
    signal.signal(signal.SIGTERM, lambda *_: None)
    while os.getppid() == parent:
        time.sleep(0.5)
    reason = "the `prefect-mltrain job run` process that ran this flow died (killed or crashed)"
    end_tagged_runs(tag, "Crashed", reason, tracking_uri)
    return 0


def supervise(args: argparse.Namespace) -> int:
    """Run `args.argv` until it exits; the parent's death kills it (see the module docstring)."""
    signal.signal(_ORPHAN_SIGNAL, lambda *_: _orphaned(args))
    _parent_death_signal(_ORPHAN_SIGNAL)
    if os.getppid() != args.parent:  # it died before the request above took effect
        _orphaned(args)
    child = subprocess.Popen(args.argv)
    # Sent to the group (a terminal's Ctrl-C, the launcher's stop), they reach the job as well:
    # the job decides what they do, and this supervisor waits for its exit.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    while True:
        try:
            code = child.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != args.parent:
                _orphaned(args)
    if code < 0:  # died of a signal: die of the same one, so the launcher sees what the job did
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--container")
    parser.add_argument("--flow-run-id")
    parser.add_argument("--mlflow-run-id", default="")
    parser.add_argument("--cleanup", action="store_true")
    parser.add_argument("--watch-tag")
    parser.add_argument("--tracking-uri", default="")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.watch_tag:
        return watch(args.parent, args.watch_tag, args.tracking_uri)
    if args.cleanup:
        cleanup(args.container, args.mlflow_run_id, args.flow_run_id)
        return 0
    if args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    if not args.argv:
        parser.error("nothing to run: pass the command after `--`")
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
