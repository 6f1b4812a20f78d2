"""The `prefect-mltrain` command line: the demo job, job files, models, environments, the local server."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.server.stack import ensure_server, is_healthy, stop_local_server, use_server
from prefect_mltrain.settings import MltrainSettings


def _demo(args: argparse.Namespace) -> int:
    info = ensure_server()
    use_server(info)  # before Prefect is imported, so this process and its workers use it
    from prefect_mltrain.blocks import MlflowTracking, RegisteredModel
    from prefect_mltrain.flows import train_sklearn, use_fast_heartbeats

    use_fast_heartbeats()

    result = train_sklearn(
        estimator=args.estimator,
        params={"max_iter": 500},
        dataset=args.dataset,
        model_name=args.model_name,
    )
    entry = RegisteredModel.version_of(args.model_name)
    tracking = MlflowTracking()
    print(
        f"\nTrained {args.estimator} on {args.dataset}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        + f"\nRegistered model: block {result.model_block!r} (alias {args.model_name!r}), "
        f"MLflow {entry.model_uri}\n"
        f"Prefect UI:  {result.flow_run_url}  (all runs: {info.ui_url}/runs, blocks: {info.ui_url}/blocks)\n"
        f"MLflow UI:   {tracking.ui_command()}  then open {tracking.run_url(result.experiment_id, result.mlflow_run_id)}\n"
        f"Load it:     RegisteredModel.load({args.model_name!r}).load_model()\n"
        f"The local Prefect server keeps running; stop it with `prefect-mltrain server stop`."
    )
    return 0


def _server(args: argparse.Namespace) -> int:
    if args.action == "start":
        info = ensure_server()
        print(f"Prefect server: {info.api_url}  (UI {info.ui_url})\nexport PREFECT_API_URL={info.api_url}")
    elif args.action == "stop":
        print("stopped" if stop_local_server() else "no local server was running")
    else:
        home = MltrainSettings().home_dir
        state = home / "prefect-server.json"
        running = state.exists() and is_healthy(json.loads(state.read_text())["api_url"])
        print("running" if running else "not running")
        return 0 if running else 1
    return 0


def _connect() -> None:
    use_server(ensure_server())


def _job_run(args: argparse.Namespace) -> int:
    from prefect_mltrain.jobs.jobfile import load_job_file

    load_job_file(args.file, args.set)  # a bad file fails here, before any server or compute starts
    if args.detach:
        log = MltrainSettings().home_dir / "detached" / f"{Path(args.file).stem}-{int(time.time())}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "prefect_mltrain.cli", "job", "run", args.file]
        for item in args.set:
            argv += ["--set", item]
        if args.resume:
            argv.append("--resume")
        _connect()
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
    _connect()
    from prefect_mltrain.flows import use_fast_heartbeats
    from prefect_mltrain.flows.run_job_file import run_job_file
    from prefect_mltrain.flows.sweep import SweepResult

    use_fast_heartbeats()

    with _watched() as tag:
        from prefect import tags

        try:
            with tags(tag):
                result = run_job_file(args.file, args.set, resume=args.resume)
        except KeyboardInterrupt:
            return _cancelled(tag)
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
    _connect()
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    run_id = _mlflow_run_of(client, args.run_id)
    target = Path(args.output or args.run_id).resolve()
    target.mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(run_id, args.path, str(target))
    print(local)
    return 0


def _mlflow_run_of(client: Any, job_id: str) -> str:
    """The MLflow run of `job_id`: an MLflow run id, or the id of the job's Prefect flow run
    (the one `job run` prints, or its `train-job` subflow's)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_run(job_id).info.run_id)
    except MlflowException:
        pass
    experiments = [e.experiment_id for e in client.search_experiments()]
    flow_runs = [job_id, *_subflow_run_ids(job_id)]
    for flow_run_id in flow_runs:
        runs = client.search_runs(
            experiments, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'", order_by=["start_time ASC"]
        )
        if runs:
            return str(runs[0].info.run_id)
    raise ConfigurationError(
        f"No MLflow run and no job's Prefect flow run has the id {job_id!r}. Fix: pass the "
        f"`MLflow run:` id or the flow run id that `prefect-mltrain job run` printed."
    )


def _subflow_run_ids(flow_run_id: str) -> list[str]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    try:
        parent = UUID(flow_run_id)
    except ValueError:
        return []
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
        )
    return [str(run.id) for run in children]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _job_list(args: argparse.Namespace) -> int:
    _connect()
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
    _connect()
    from dataclasses import asdict

    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.jobs.records import show_job

    print(json.dumps(asdict(show_job(MlflowTracking().client(), args.id)), indent=2, default=str))
    return 0


def _job_stream(args: argparse.Namespace) -> int:
    _connect()
    from prefect_mltrain.jobs.records import stream_job

    state = stream_job(args.id, lambda line: print(line, flush=True))
    print(f"Job {args.id} ended: {state}", flush=True)
    return 0 if state == "Completed" else 1


def _job_cancel(args: argparse.Namespace) -> int:
    _connect()
    from prefect_mltrain.jobs.records import cancel_job

    print(cancel_job(args.id, MltrainSettings().home_dir))
    return 0


_AZUREML_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/artifacts/paths/(?P<path>.+?)/?$")


def _model_path(path: str | None) -> tuple[str, str]:
    """(job or run id, artifact path) of `runs:/<run>/<path>`, `azureml://jobs/<job>/outputs/
    artifacts/paths/<path>` or `<job or run id>/<path>`."""
    if path:
        if match := _AZUREML_OUTPUT.match(path):
            return match["job"], match["path"]
        parts = path.removeprefix("runs:/").strip("/").split("/", 1)
        if len(parts) == 2 and parts[0] and parts[1]:
            return parts[0], parts[1]
    raise ConfigurationError(
        f"`--path`={path!r} names no job output. Fix: `--path <job id>/outputs/<name>` (the id "
        f"`job run` prints, or its MLflow run id), `runs:/<run id>/outputs/<name>` or "
        f"`azureml://jobs/<job id>/outputs/artifacts/paths/outputs/<name>`."
    )


def _model_create(name: str, path: str | None) -> int:
    """Register a job's output as a new version of model `name` (`az ml model create --path`)."""
    import tempfile

    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.blocks.model import check_model_name
    from prefect_mltrain.registry.frameworks import detect_framework
    from prefect_mltrain.tasks.register import register

    check_model_name(name)
    job_id, artifact_path = _model_path(path)
    tracking = MlflowTracking()
    client = tracking.client()
    run_id = _mlflow_run_of(client, job_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, artifact_path, tmp)
        except Exception:  # noqa: BLE001 - MLflow says OSError or MlflowException, by store
            listed = [a.path for a in client.list_artifacts(run_id, str(Path(artifact_path).parent))]
            raise ConfigurationError(
                f"Run {run_id} has no artifact {artifact_path!r} (beside it: {listed or 'nothing'}). "
                f"Fix: `--path {job_id}/<one of those>`."
            ) from None
        framework = detect_framework(Path(local))
    entry = register(tracking, name, run_id, artifact_path, framework, description=f"from {path}")
    print(
        f"Registered {name} version {entry.version} ({framework}) from run {run_id}: block "
        f"{entry.document_name!r}, alias {name!r}"
    )
    return 0


def _model(args: argparse.Namespace) -> int:
    _connect()
    from prefect_mltrain.blocks import RegisteredModel
    from prefect_mltrain.blocks._load import saved_names
    from prefect_mltrain.registry import serving

    if args.action == "list":
        for name in saved_names(RegisteredModel):
            if not re.search(r"-v\d+$", name):
                entry = RegisteredModel.version_of(name)
                metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(entry.metrics.items())[:4])
                print(f"{name:<30} v{entry.version:<4} {entry.framework:<10} {metrics}")
        return 0
    args.name = args.name or args.name_option
    if not args.name:
        raise ConfigurationError(f"`prefect-mltrain model {args.action}` needs a model name.")
    if args.action == "create":
        return _model_create(args.name, args.path)
    if args.action == "show":
        entry = RegisteredModel.version_of(args.name, args.version)
        print(json.dumps(entry.model_dump(mode="json"), indent=2))
    elif args.action == "serve":
        server = serving.serve(RegisteredModel.version_of(args.name, args.version), args.port)
        print(
            f"Serving {args.name} v{server.version} at {server.url}\n"
            f"curl -X POST {server.url}/invocations -H 'Content-Type: application/json' -d '{{\"inputs\": [[...]]}}'\n"
            f"Stop it with: prefect-mltrain model stop {args.name}"
        )
    else:
        print("stopped" if serving.stop(args.name) else f"{args.name} was not being served")
    return 0


def _env(args: argparse.Namespace) -> int:
    _connect()
    from prefect_mltrain.blocks import TrainingEnvironment
    from prefect_mltrain.blocks._load import resolve_block, saved_names

    if args.action == "list":
        for name in saved_names(TrainingEnvironment):
            env = resolve_block(name, TrainingEnvironment, "name")
            print(f"{name:<30} {env.kind:<13} {env.content_hash()[:16]}")
        return 0
    env = resolve_block(args.name, TrainingEnvironment, "name")
    print(
        json.dumps(
            {
                "kind": env.kind,
                "content_hash": env.content_hash(),
                "spec": env.spec(),
                "environment_variables": env.environment_variables,
            },
            indent=2,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `prefect-mltrain`."""
    parser = argparse.ArgumentParser(prog="prefect-mltrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="Train a scikit-learn model on iris end to end and register it.")
    demo.add_argument("--estimator", default="sklearn.linear_model.LogisticRegression")
    demo.add_argument("--dataset", default="iris")
    demo.add_argument("--model-name", default="iris-classifier")
    demo.set_defaults(func=_demo)
    server = sub.add_parser("server", help="Start, stop or check the local Prefect server.")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.set_defaults(func=_server)

    job = sub.add_parser("job", help="Run Azure ML CLI v2 job files, download run outputs.")
    job_sub = job.add_subparsers(dest="job_command", required=True)
    run = job_sub.add_parser("run", help="Run a job file, streaming its logs (or --detach).")
    run.add_argument("file")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a job file value, as `az ml job create --set`.",
    )
    run.add_argument("--detach", action="store_true", help="Return at once; the job runs in the background.")
    run.add_argument(
        "--resume",
        action="store_true",
        help="Continue the sweep that the file's `name:` names (a sweep job file starts a new sweep otherwise).",
    )
    run.set_defaults(func=_job_run)
    download = job_sub.add_parser("download", help="Download a run's artifacts (default: outputs).")
    download.add_argument("run_id")
    download.add_argument("--path", default="outputs")
    download.add_argument("--output", "-o", help="Folder to download into (default: ./<run id>).")
    download.set_defaults(func=_job_download)
    listing = job_sub.add_parser("list", help="Recent jobs: id, name, flow, state, duration, metrics.")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=_job_list)
    for verb, helptext, func in (
        ("show", "A job's state, inputs, environment, MLflow run, outputs and error.", _job_show),
        ("stream", "Follow a job's logs live until it ends; exit 0 when it completed.", _job_stream),
        ("cancel", "Cancel a running job: its processes are stopped, Prefect Cancelled.", _job_cancel),
    ):
        command = job_sub.add_parser(verb, help=helptext)
        command.add_argument("id", help="The job's flow run id (`job run` prints it; see `job list`).")
        command.set_defaults(func=func)

    model = sub.add_parser("model", help="Create (register), list, show, serve or stop registered models.")
    model.add_argument("action", choices=["create", "list", "show", "serve", "stop"])
    model.add_argument("name", nargs="?")
    model.add_argument("--version", type=int)
    model.add_argument("--port", type=int)
    model.add_argument("--name", dest="name_option", help="The model's name (for `create`, as `az ml model create`).")
    model.add_argument("--path", help="For `create`: the job output to register, e.g. <job id>/outputs/model.")
    model.set_defaults(func=_model)

    env = sub.add_parser("env", help="List or show saved training environments.")
    env.add_argument("action", choices=["list", "show"])
    env.add_argument("name", nargs="?")
    env.set_defaults(func=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `prefect-mltrain`."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # a clean one-line error for users; tracebacks stay in the flow logs
        from prefect_mltrain.errors import MltrainError

        if isinstance(exc, MltrainError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
