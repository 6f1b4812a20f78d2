"""The `prefect-mltrain` command line: the demo job, job files, models, environments, the local server."""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from prefect_mltrain.cli.common import connect
from prefect_mltrain.cli.jobs import _job_cancel, _job_download, _job_list, _job_run, _job_show, _job_stream
from prefect_mltrain.cli.models import _model
from prefect_mltrain.errors import MltrainError
from prefect_mltrain.jobs.jobfile import JobFileError
from prefect_mltrain.server.mlflow_server import ensure_mlflow_server, running_mlflow_server, stop_mlflow_server
from prefect_mltrain.server.stack import ensure_server, is_healthy, stop_local_server, use_server
from prefect_mltrain.settings import MltrainSettings


def _demo(args: argparse.Namespace) -> int:
    ensure_mlflow_server(wait=False)  # the demo logs to it: a port problem stops the demo here, before it runs
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
        f"MLflow UI:   {tracking.run_url(result.experiment_id, result.mlflow_run_id)}\n"
        f"Load it:     RegisteredModel.load({args.model_name!r}).load_model()\n"
        f"The local Prefect and MLflow servers keep running; stop them with `prefect-mltrain server stop`."
    )
    return 0


def _server(args: argparse.Namespace) -> int:
    from prefect_mltrain.compute import warm

    if args.action == "start":
        info = ensure_server()
        # Its workers import in the background; only its scheduler is waited for (a second or two).
        compute = warm.ensure_warm_compute(api_url=info.api_url) if MltrainSettings().warm_compute else None
        mlflow = ensure_mlflow_server()
        print(
            f"Prefect server: {info.api_url}  (UI {info.ui_url})\n"
            f"MLflow server:  {mlflow.url}  (UI {mlflow.url})\n"
            f"Dask compute:   {_describe(compute)}\n"
            f"export PREFECT_API_URL={info.api_url}"
        )
    elif args.action == "stop":
        stopped = [stop_local_server(), stop_mlflow_server(), warm.stop_warm_compute()]
        print("stopped" if any(stopped) else "no local server was running")
    else:
        home = MltrainSettings().home_dir
        state = home / "prefect-server.json"
        running = state.exists() and is_healthy(json.loads(state.read_text())["api_url"])
        mlflow_running = running_mlflow_server()
        print(f"Prefect server: {'running' if running else 'not running'}")
        print(f"MLflow server:  {f'running at {mlflow_running.url}' if mlflow_running else 'not running'}")
        print(f"Dask compute:   {_describe(warm.running_warm_compute())}")
        return 0 if running else 1
    return 0


def _describe(compute: object) -> str:
    from prefect_mltrain.compute.warm import WarmCompute

    if not isinstance(compute, WarmCompute):
        return "not running" if MltrainSettings().warm_compute else "off (PREFECT_MLTRAIN_WARM_COMPUTE=false)"
    return (
        f"running at {compute.address} ({compute.n_workers} worker process(es) x "
        f"{compute.threads_per_worker} thread(s), warm between flows)"
    )


def _env(args: argparse.Namespace) -> int:
    connect()
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


_DEBUG_HELP = "Print tracebacks: of an error here, and of failing flow runs in their logs."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `prefect-mltrain`."""
    parser = argparse.ArgumentParser(prog="prefect-mltrain", description=__doc__)
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="Train a scikit-learn model on iris end to end and register it.")
    demo.add_argument("--estimator", default="sklearn.linear_model.LogisticRegression")
    demo.add_argument("--dataset", default="iris")
    demo.add_argument("--model-name", default="iris-classifier")
    demo.set_defaults(func=_demo)
    server = sub.add_parser("server", help="Start, stop or check the local Prefect and MLflow servers.")
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
    # SUPPRESS: without it, the subcommand's default would undo `prefect-mltrain --debug job run`.
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
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
    """Entry point of `prefect-mltrain`.

    Errors in what the user gave (prefect-mltrain's own errors) print as `error: ...` lines on
    stderr, one per problem, and exit 2; anything else prints one line too. Tracebacks are
    printed only with `--debug`.
    """
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except MltrainError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc)
        return 2
    except Exception as exc:
        if debug:
            raise
        print(
            f"error: {type(exc).__name__}: {exc}\n(unexpected: rerun with --debug for the traceback, and report it)",
            file=sys.stderr,
        )
        return 1


def _print_error(exc: MltrainError) -> None:
    if isinstance(exc, JobFileError):
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        count = len(exc.problems)
        print(
            f"{count} problem{'s' if count > 1 else ''} in {exc.shown_path}; no job was started.",
            file=sys.stderr,
        )
        return
    print(f"error: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
