"""The `prefect-mltrain` command line: the local stack and the demo job."""

from __future__ import annotations

import argparse
import json
import sys

from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.stack import ensure_server, is_healthy, stop_local_server, use_server


def _demo(args: argparse.Namespace) -> int:
    info = ensure_server()
    use_server(info)  # before Prefect is imported, so this process and its workers use it
    from prefect_mltrain.blocks import MlflowTracking, RegisteredModel
    from prefect_mltrain.flows import train_sklearn

    result = train_sklearn(
        estimator=args.estimator, params={"max_iter": 500}, dataset=args.dataset,
        model_name=args.model_name,
    )
    entry = RegisteredModel.load(args.model_name)
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
