"""`MlflowTracking`: where metrics, params, artifacts and registered models are kept."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prefect.blocks.core import Block
from pydantic import Field

from prefect_mltrain.server.mlflow_server import ensure_mlflow_server
from prefect_mltrain.tracking.client import mlflow_client

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class MlflowTracking(Block):
    """MLflow tracking for training runs: a tracking URI, an artifact location and an experiment.

    With no fields set it uses the project's own MLflow tracking server (`mlflow server` on
    127.0.0.1, started on first use, over a SQLite store under `~/.prefect-mltrain/mlflow` with
    its artifacts served through it): every job, trial and rank logs to it over HTTP, so any
    MLflow client works (full, skinny, 2.x) and workers need no shared filesystem. Point
    `tracking_uri` at a team's MLflow server instead.

    Example:
        ```python
        from prefect_mltrain.blocks import MlflowTracking

        MlflowTracking(tracking_uri="http://mlflow.internal:5000").save("team")
        tracking = MlflowTracking.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "MLflow Tracking"
    _logo_url = None  # type: ignore[assignment]
    _description = "Where prefect-mltrain logs runs and registers models in MLflow."

    tracking_uri: str | None = Field(
        default=None,
        title="Tracking URI",
        description="MLflow tracking URI, e.g. `http://mlflow:5000`; empty means the project's "
        "own MLflow server (started on first use, SQLite store under the project home). A "
        "`sqlite:///` or folder store works on one machine only.",
    )
    registry_uri: str | None = Field(
        default=None,
        title="Registry URI",
        description="MLflow model registry URI; empty means the tracking URI.",
    )
    artifact_location: str | None = Field(
        default=None,
        title="Artifact location",
        description="Artifact root for new experiments, e.g. `s3://bucket/mlflow`; empty means "
        "the server's default (the project's server serves them from the project home).",
    )
    experiment_name: str = Field(
        default="prefect-mltrain",
        title="Experiment",
        description="Experiment that runs are logged to unless a flow is given another.",
    )

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in use: `tracking_uri`, or the project's MLflow server (started if need be)."""
        if self.tracking_uri:
            return self.tracking_uri
        return ensure_mlflow_server().url

    def resolved_artifact_location(self) -> str | None:
        """Artifact root for new experiments; None leaves it to the tracking server."""
        return self.artifact_location

    def pinned(self) -> MlflowTracking:
        """This block with its tracking URI resolved here, for work that runs elsewhere.

        A Dask worker may have another project home (or none): given the default block, it
        would look for an MLflow server of its own. The flow pins the block before handing it
        out, so every worker logs to the server the flow resolved.
        """
        if self.tracking_uri:
            return self
        return self.model_copy(update={"tracking_uri": self.resolved_tracking_uri()})

    def client(self) -> MlflowClient:
        """An `MlflowClient` on this block's tracking and registry URIs."""

        return mlflow_client(tracking_uri=self.resolved_tracking_uri(), registry_uri=self.registry_uri)

    def ensure_experiment(self, name: str | None = None) -> str:
        """Create the experiment if it is missing (and, the first time, the store) and return its id.

        Done once in the flow process, before Dask workers write to the store, since
        concurrent first writes to a new SQLite store race on its schema.
        """
        name = name or self.experiment_name
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(client.create_experiment(name, artifact_location=self.resolved_artifact_location()))
        except Exception:
            # Another process created it between our read and our write.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def environment_variables(self, run_id: str | None = None, experiment_id: str | None = None) -> dict[str, str]:
        """Variables that make a child process's plain `mlflow.log_*` calls land in `run_id`."""
        env = {"MLFLOW_TRACKING_URI": self.resolved_tracking_uri()}
        if self.registry_uri:
            env["MLFLOW_REGISTRY_URI"] = self.registry_uri
        if run_id:
            env["MLFLOW_RUN_ID"] = run_id
        if experiment_id:
            env["MLFLOW_EXPERIMENT_ID"] = experiment_id
        return env

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """A browser URL of the run on the tracking server (the UI of a local store: `ui_command`)."""
        return f"{self._ui_base()}/#/experiments/{experiment_id}/runs/{run_id}"

    def ui_command(self) -> str:
        """What to do to see this store's MLflow UI."""
        uri = self.resolved_tracking_uri()
        if uri.startswith(("http://", "https://")):
            return f"open {uri.rstrip('/')}"
        return f"mlflow ui --backend-store-uri {uri} --port 5000"

    def _ui_base(self) -> str:
        uri = self.resolved_tracking_uri()
        if uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
        return "http://127.0.0.1:5000"  # where `ui_command` serves a local store

    @contextlib.contextmanager
    def start_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Iterator[Any]:
        """Create an MLflow run and always end it: FINISHED, FAILED on error, KILLED on cancel.

        Yields:
            The created `mlflow.entities.Run`.
        """
        client = self.client()
        run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            raise
        finally:
            client.set_terminated(run.info.run_id, status=status)
