"""`prefect-mltrain model ...`: create (register a job's output), list, show, serve, stop."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from prefect_mltrain.cli.common import connect
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.jobs.records import mlflow_run_of

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
    run_id = mlflow_run_of(client, job_id)
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
    connect()
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
