"""Register a model logged in an MLflow run as a new version and a `RegisteredModel` block."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from prefect_mltrain.blocks.model import RegisteredModel, check_model_name
from prefect_mltrain.blocks.tracking import MlflowTracking
from prefect_mltrain.errors import ModelNotFoundError, ModelRegistrationError

ALIAS_NOTE = "moving alias of the newest version"


def register(
    tracking: MlflowTracking,
    model_name: str,
    run_id: str,
    artifact_path: str,
    framework: str,
    *,
    framework_version: str | None = None,
    description: str | None = None,
    flow_run_id: str | None = None,
    environment_hash: str | None = None,
    data_fingerprint: str | None = None,
    resources: dict[str, Any] | None = None,
) -> RegisteredModel:
    """Create MLflow model version N of `model_name` from `runs:/<run_id>/<artifact_path>`.

    Saves the block `<model_name>-v<N>` (never overwritten) and moves the alias block
    `<model_name>` to it. If the version block already exists, the MLflow version just
    created is deleted again and nothing else changes.

    Raises:
        ModelRegistrationError: The version block exists already.
    """
    check_model_name(model_name)
    client = tracking.client()
    run = client.get_run(run_id)
    _ensure_registered_model(client, model_name)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = client.create_model_version(
        model_name,
        source=source,
        run_id=run_id,
        tags={"prefect.flow_run_id": flow_run_id or "", "mltrain.framework": framework},
    )
    entry = RegisteredModel(
        model_name=model_name,
        version=int(version.version),
        framework=framework,
        framework_version=framework_version,
        model_uri=f"models:/{model_name}/{version.version}",
        source_uri=f"runs:/{run_id}/{artifact_path}",
        tracking_uri=tracking.resolved_tracking_uri(),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        description=description,
        flow_run_id=flow_run_id,
        mlflow_run_id=run_id,
        environment_hash=environment_hash,
        data_fingerprint=data_fingerprint,
        resources=resources or {},
    )
    try:
        _save(entry, entry.document_name, overwrite=False)
    except ValueError:
        client.delete_model_version(model_name, version.version)
        raise ModelRegistrationError(
            f"A RegisteredModel block {entry.document_name!r} already exists, so version "
            f"{version.version} of {model_name!r} was not registered (the MLflow version just "
            f"created was deleted again; nothing was overwritten). This happens when the MLflow "
            f"registry and the Prefect server disagree, e.g. a new MLflow store beside an old "
            f"Prefect database. Fix: point both at the stores that belong together, or use "
            f"another `model_name`."
        ) from None
    _point_alias_at_newest(client, model_name)
    return entry


def _save(block: RegisteredModel, name: str, overwrite: bool) -> None:
    """`block.save`, which also registers the block type and schema on first use: done by
    several processes at once, all but one get ObjectAlreadyExists; then it exists, so again."""
    from prefect.exceptions import ObjectAlreadyExists

    for attempt in range(3):
        try:
            block.save(name, overwrite=overwrite)
            return
        except ObjectAlreadyExists:
            if attempt == 2:
                raise


def _ensure_registered_model(client: Any, model_name: str) -> None:
    """Create the MLflow registered model unless it exists (another process may create it now)."""
    from mlflow.exceptions import MlflowException

    if client.search_registered_models(filter_string=f"name = '{model_name}'"):
        return
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _point_alias_at_newest(client: Any, model_name: str, passes: int = 5) -> None:
    """Make the alias document `model_name` a copy of the newest version that has its document.

    Registrations of one name may run at once: each moves the alias only forward, to the
    newest version it can see, and looks again after its write, so the last one to finish
    leaves the alias on the newest version whatever the interleaving.
    """
    for _ in range(passes):
        versions = sorted(
            (int(v.version) for v in client.search_model_versions(f"name = '{model_name}'")), reverse=True
        )
        newest = None
        for number in versions:
            try:
                newest = RegisteredModel.load(f"{model_name}-v{number}")
                break
            except ModelNotFoundError:
                continue  # its registration has not saved the document yet: it will move the alias itself
        if newest is None:
            return
        try:
            if RegisteredModel.load(model_name).version >= newest.version:
                return
        except ModelNotFoundError:
            pass
        # A fresh instance: saving a loaded one again would update the version document it came from.
        alias = RegisteredModel(**{name: getattr(newest, name) for name in RegisteredModel.model_fields})
        _save(alias, model_name, overwrite=True)


@task(name="register-model")
def register_model(
    tracking: MlflowTracking, model_name: str, run_id: str, artifact_path: str, framework: str, **lineage: Any
) -> RegisteredModel:
    """Prefect task around `register`, logging where the new version can be found."""
    entry = register(tracking, model_name, run_id, artifact_path, framework, **lineage)
    get_run_logger().info(
        "Registered %s version %d (block %r, alias %r)",
        model_name,
        entry.version,
        entry.document_name,
        model_name,
    )
    return entry
