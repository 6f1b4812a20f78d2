"""Helpers for tests that read what a user would see in Prefect and MLflow."""

from __future__ import annotations

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId


def flow_run_logs(flow_run_id: str, expect: str | None = None, timeout: float = 15.0) -> list[str]:
    """Messages of a flow run's logs (its tasks' included), waiting for `expect` to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=0
            )
        messages = [log.message for log in logs]
        if expect is None or any(expect in m for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def mlflow_runs_of(flow_run_id: str):
    """MLflow runs tagged with a Prefect flow run id, in the default store."""
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")


def drain_prefect_queues(timeout: float = 5.0) -> None:
    """Send Prefect's queued logs and events now, while the server is still up.

    Drained at interpreter exit instead, after a local server is gone, they retry for about
    a minute.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:  # best effort at shutdown
            pass


def wait_for_http(url: str, timeout: float = 180.0) -> str:
    """The body of the first 200 answer of `GET url` within `timeout` seconds (a server coming up)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return answer.text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)
