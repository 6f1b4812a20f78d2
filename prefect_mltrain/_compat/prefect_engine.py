"""Running a flow run that was created by hand, and wrapping a Dask future for Prefect.

A sweep trial is a flow run created in one API call (named, tagged, with its slot task as
parent) and then run by Prefect's engine in the slot's worker; Prefect's public path (calling
the flow inside the task) costs four API calls more per trial. DDP ranks are submitted with
`Client.submit(..., workers=[...])` to pin each rank to its worker, which Prefect's task runner
does not expose, and wrapped back into a `PrefectDaskFuture`.
"""

from __future__ import annotations

from typing import Any


def create_flow_run(
    client: Any,
    flow: Any,
    flow_id: Any,
    name: str,
    parameters: dict[str, Any],
    tags: list[str],
    parent_task_run_id: Any,
) -> Any:
    """POST one Pending flow run of `flow` (whose id is `flow_id`) under a task run; return it."""
    from prefect.client.schemas.actions import FlowRunCreate
    from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
    from prefect.states import Pending, to_state_create

    body = FlowRunCreate(
        flow_id=flow_id,
        flow_version=flow.version,
        name=name,
        parameters=parameters,
        tags=tags,
        parent_task_run_id=parent_task_run_id,
        state=to_state_create(Pending()),
        empirical_policy=FlowRunPolicy(retries=flow.retries, retry_delay=int(flow.retry_delay_seconds or 0)),
    )
    response = client.request("POST", "/flow_runs/", json=body.model_dump(mode="json", exclude_unset=True))
    return FlowRun.model_validate(response.json())


def create_flow(client: Any, name: str) -> Any:
    """POST (or find) the flow called `name`; return its id."""
    from prefect.client.schemas.actions import FlowCreate
    from prefect.client.schemas.objects import Flow

    response = client.request("POST", "/flows/", json=FlowCreate(name=name).model_dump(mode="json"))
    return Flow.model_validate(response.json()).id


def run_created_flow_run(flow: Any, flow_run: Any, parameters: dict[str, Any]) -> Any:
    """Run `flow_run` (created by `create_flow_run`) in this thread; return its final state.

    Outside the calling task run's context, so the flow run's logs and prints land in the flow
    run itself, not in the task run that started it.
    """
    from prefect.context import TaskRunContext
    from prefect.flow_engine import run_flow

    token = TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
    try:
        return run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")
    finally:
        TaskRunContext.__var__.reset(token)


def prefect_dask_future(dask_future: Any) -> Any:
    """Wrap a future from `PrefectDaskClient.submit(task, ...)` as the `PrefectDaskFuture` the runner would give."""
    from prefect_dask.task_runners import PrefectDaskFuture

    return PrefectDaskFuture(wrapped_future=dask_future, task_run_id=dask_future.task_run_id)
