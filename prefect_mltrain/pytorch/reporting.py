"""What a training process tells the world: its rank's log file, the Prefect chart, MLflow.

Every rank keeps its own log file, `<checkpoint_dir>/logs/rank_<r>.log` (Azure ML's per-process
driver logs), logged to MLflow as well; rank 0 alone logs the metrics of each epoch to MLflow
and to the Prefect table artifact.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prefect_mltrain.tracking.client import mlflow_client


def rank_logger(log_dir: Path, rank: int) -> tuple[logging.Logger, logging.Handler]:
    """A logger writing to `log_dir/rank_<rank>.log`, and its handler (close it when done)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"prefect_mltrain.pytorch.rank{rank}.{os.getpid()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(log_dir / f"rank_{rank}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s rank" + str(rank) + " %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


class RankLog:
    """Writes to the rank's log file and, inside a Prefect task, to the task run's logs."""

    def __init__(self, file_logger: logging.Logger) -> None:
        self.file_logger = file_logger
        try:
            from prefect.logging import get_run_logger

            self.prefect: Any = get_run_logger()
        except Exception:  # not in a Prefect run (benchmarks, plain calls)
            self.prefect = None

    def info(self, message: str, *args: Any) -> None:
        self.file_logger.info(message, *args)
        if self.prefect is not None:
            self.prefect.info(message, *args)


def publish_chart(history: list[dict[str, float]]) -> None:
    """Publish the per-epoch metrics as a Prefect table artifact (a new version each epoch)."""
    try:
        from prefect.artifacts import create_table_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is None:
            return
        rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in history]
        create_table_artifact(
            rows, key="pytorch-training-metrics", description="Metrics per epoch of train_pytorch_model (rank 0)."
        )
    except Exception:  # the chart is a convenience; training must not fail for it
        logging.getLogger(__name__).debug("could not publish the metrics chart", exc_info=True)


def tracking_client(tracking_uri: str | None, run_id: str | None) -> Any:
    """An MLflow client for the run, or None when the training is not tracked."""
    if not (tracking_uri and run_id):
        return None
    return mlflow_client(tracking_uri=tracking_uri)


def log_metrics(client: Any, run_id: str | None, metrics: dict[str, float], epoch: int) -> None:
    """Log an epoch's metrics to the MLflow run (a no-op without a client)."""
    if client is None:
        return
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, step=epoch)


def log_rank_file(tracking_uri: str | None, run_id: str | None, path: Path) -> None:
    """Log a rank's log file under `logs/` in the MLflow run; a failure is a warning only."""
    try:
        mlflow_client(tracking_uri=tracking_uri).log_artifact(str(run_id), str(path), "logs")
    except Exception:  # a log upload must not hide the training error
        logging.getLogger(__name__).warning("could not log %s to MLflow", path, exc_info=True)
