"""Link a Prefect flow run and an MLflow run both ways."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.context import get_run_context
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL


@dataclass(kw_only=True)
class TrackedRun:
    """What every training flow returns: its MLflow run, flow run, metrics and registered model."""

    mlflow_run_id: str
    experiment_id: str
    flow_run_url: str
    metrics: dict[str, float] = field(default_factory=dict)
    model_block: str | None = None
    model_version: int | None = None


def run_logger(fallback: str) -> Any:
    """The current flow or task run's logger (its lines show in the Prefect UI), or the plain
    logger named `fallback` outside a run."""
    import logging

    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)


def flow_run_info() -> dict[str, str]:
    """Id, name and UI URL of the current flow run (empty strings outside a flow run)."""
    try:
        flow_run = get_run_context().flow_run  # type: ignore[union-attr]
    except Exception:
        return {"id": "", "name": "", "url": ""}
    if flow_run is None:
        return {"id": "", "name": "", "url": ""}
    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return {"id": str(flow_run.id), "name": flow_run.name, "url": f"{ui}/runs/flow-run/{flow_run.id}"}


def mlflow_tags(info: dict[str, str]) -> dict[str, str]:
    """MLflow run tags that point back to the Prefect flow run."""
    return {
        "prefect.flow_run_id": info["id"],
        "prefect.flow_run_name": info["name"],
        "prefect.flow_run_url": info["url"],
    }


def publish_run_links(
    run_url: str, run_id: str, ui_command: str, summary: dict[str, Any], key: str = "mlflow-run"
) -> None:
    """Attach a link to the MLflow run and a summary table to the current Prefect flow run."""
    create_link_artifact(
        key=key,
        link=run_url,
        link_text=f"MLflow run {run_id}",
        description=f"Serve the MLflow UI with `{ui_command}` if it is not running.",
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.items())
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=f"| | |\n|---|---|\n{rows}\n",
        description="Where this run's results are.",
    )
