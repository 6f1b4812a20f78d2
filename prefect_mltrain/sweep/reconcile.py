"""What a killed run of a sweep leaves unfinished, ended: flow runs Crashed, MLflow runs KILLED.

The sweep ends a lost trial's runs at once (`sweep.watch.Watch`: `crash_flow_run`,
`kill_trial_runs`); a resumed sweep, which holds the sweep's lock and so knows no other run
of it is alive, ends every run the killed one left (`crash_stale_flow_runs`, `kill_stale_runs`).
A sweep killed and never resumed is ended by the next flow of this package that starts on the
same machine (`tracking.orphans`).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any


def crash_stale_flow_runs(name: str, current_flow_run_id: str | None) -> int:
    """End Crashed the flow runs a killed run of sweep `name` left unfinished; return how many.

    Its trial flow runs (tagged `sweep:<name>`), its own `sweep` flow run and that run's slot
    task runs. The caller holds the sweep's lock, so none of them is alive.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
    message = f"a run of sweep {name!r} that was killed left this run unfinished; a resume of the sweep ended it"
    current = uuid.UUID(str(current_flow_run_id)) if current_flow_run_id else None
    crashed = 0
    with get_client(sync_client=True) as client:
        state = FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished))
        trials = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{name}"]), state=state), limit=200
        )
        sweeps = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["sweep"])),
            flow_run_filter=FlowRunFilter(state=state),
            limit=200,
        )
        sweeps = [r for r in sweeps if r.id != current and (r.parameters or {}).get("name") == name]
        for run in [*trials, *sweeps]:
            if run.id != current:
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed += 1
        if sweeps:
            slots = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in sweeps])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished))),
                limit=200,
            )
            for task_run in slots:
                client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    return crashed


def crash_flow_run(flow_run_id: str | None, message: str) -> None:
    """Set a flow run whose process died Crashed, unless it already ended (best effort)."""
    if not flow_run_id:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(str(flow_run_id)))
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)


def kill_trial_runs(client: Any, experiment_id: str, name: str, number: int) -> int:
    """End the MLflow runs of trial `number` of sweep `name` still RUNNING (KILLED); return how many."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{name}' and tags.`mltrain.trial` = '{number}' "
        "and attributes.status = 'RUNNING'",
        max_results=100,
    )
    for r in runs:
        client.set_terminated(r.info.run_id, status="KILLED")
    return len(runs)


def kill_stale_runs(client: Any, experiment_id: str, name: str, parent_run_id: str | None) -> int:
    """End MLflow runs of this sweep left RUNNING by a killed process (KILLED); return how many."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{name}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    stale = [r for r in runs if r.info.run_id != parent_run_id]
    for r in stale:
        client.set_terminated(r.info.run_id, status="KILLED")
    return len(stale)
