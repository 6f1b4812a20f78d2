"""The one place an MLflow client is made (mlflow is imported here, on first use)."""

from __future__ import annotations

from typing import Any


def mlflow_client(tracking_uri: str | None = None, registry_uri: str | None = None) -> Any:
    """An `MlflowClient` for `tracking_uri` (MLflow's default when None) and `registry_uri`."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
