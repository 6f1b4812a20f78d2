"""Flow runs whose process died, ended: Crashed in Prefect, their MLflow runs KILLED.

Every flow run this package starts is tagged with the process that runs it (`owner_tags`):
`mltrain.host:<hostname>` and `mltrain.process:<identity>` (`system.identity`: machine, boot,
pid namespace, pid, start time). The flows get them from Prefect's tags context when they are
called (`flows/_embedded.py`), at no cost; a sweep's trial flow runs get their Dask worker's
(`sweep.runner.TrialRuns`). A process killed with SIGKILL cannot end its own runs, and trial
runs send no heartbeats, so nothing in Prefect notices; the next flow of this package that
starts on the same machine does (`end_orphaned_runs`): one query for the unfinished flow runs
tagged with this host, and those whose process is provably gone end Crashed (Cancelled when
they were being cancelled), with their unfinished task runs; then their MLflow runs end KILLED
(`kill_mlflow_runs`). A run on another machine, in another container, or whose process cannot
be judged is left alone: its own machine's next flow, or a resume of its sweep, ends it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prefect_mltrain.system.identity import ProcessIdentity

HOST_TAG = "mltrain.host:"
PROCESS_TAG = "mltrain.process:"
#: Unfinished flow runs read per check (the Prefect server's largest page); a machine rarely has more.
QUERY_LIMIT = 200


def owner_tags(identity: ProcessIdentity | None = None) -> list[str]:
    """The tags naming `identity` (this process by default) as the one that runs a flow run; none off Linux.

    Example:
        >>> owner_tags(ProcessIdentity("box", "a1", "b2", "9", 1234, 5))
        ['mltrain.host:box', 'mltrain.process:a1.b2.9.1234.5']
    """
    identity = identity or ProcessIdentity.current()
    return [] if identity is None else [f"{HOST_TAG}{identity.host}", f"{PROCESS_TAG}{identity.token()}"]


def with_owner_tags(tags: Iterable[str]) -> list[str]:
    """`tags` with this process as the owner: any other process's owner tags taken out, this one's added."""
    return sorted({t for t in tags if not t.startswith((HOST_TAG, PROCESS_TAG))} | set(owner_tags()))


def owner_of(tags: Iterable[str]) -> ProcessIdentity | None:
    """The process the owner tags among `tags` name; None when there is not exactly one.

    Example:
        >>> owner_of(["team", "mltrain.host:box", "mltrain.process:a1.b2.9.1234.5"]).pid
        1234
        >>> owner_of(["team"]) is None
        True
    """
    hosts = [t[len(HOST_TAG) :] for t in tags if t.startswith(HOST_TAG)]
    tokens = [t[len(PROCESS_TAG) :] for t in tags if t.startswith(PROCESS_TAG)]
    if len(hosts) != 1 or len(tokens) != 1:
        return None
    return ProcessIdentity.parse(hosts[0], tokens[0])


@contextlib.contextmanager
def owned_by_this_process() -> Iterator[None]:
    """Flow runs created inside (and their task runs) carry this process's owner tags, and no other's.

    A flow called inside a Dask worker's task inherits the tags of the process that submitted
    the task; this replaces its owner tags with the worker's.
    """
    from prefect.context import TagsContext

    with TagsContext(current_tags=set(with_owner_tags(TagsContext.get().current_tags))):
        yield


def end_orphaned_runs(reason: str) -> list[Any]:
    """End the unfinished flow runs tagged with this host whose process is provably gone; return them.

    One query when nothing is left over (the common case); each run ended gets `reason` after
    the pid and host of its dead process. Their unfinished task runs (a sweep's `trial-slot`
    tasks, a subflow's placeholder) end Crashed too.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Crashed

    here = ProcessIdentity.current()
    if here is None:
        return []
    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    ended = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"{HOST_TAG}{here.host}"]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
            ),
            limit=QUERY_LIMIT,
        )
        for run in runs:
            owner = owner_of(run.tags)
            if owner is None or owner.is_gone(here) is not True:
                continue
            message = f"its process (pid {owner.pid} on {owner.host}) died without ending it; {reason}"
            cancelling = run.state is not None and run.state.type == StateType.CANCELLING
            client.set_flow_run_state(run.id, (Cancelled if cancelling else Crashed)(message=message), force=True)
            ended.append(run)
        if ended:
            _end_task_runs(client, [r.id for r in ended], reason)
    return ended


def _end_task_runs(client: Any, flow_run_ids: list[Any], reason: str) -> None:
    """Crash the unfinished task runs of `flow_run_ids` (their process died with the flow's)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED]
    task_runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished))),
        limit=QUERY_LIMIT,
    )
    for task_run in task_runs:
        message = f"its flow run's process died without ending it; {reason}"
        client.set_task_run_state(task_run.id, Crashed(message=message), force=True)


def kill_mlflow_runs(
    flow_run_ids: list[str], tracking_uris: Callable[[], Iterable[str]], reason: str, timeout: float = 20.0
) -> int:
    """End KILLED the RUNNING MLflow runs tagged with one of `flow_run_ids`, in each store; return how many.

    `tracking_uris` gives the stores (resolving one may start the project's MLflow server).
    Waits at most `timeout` seconds (an unreachable tracking server retries for minutes); the
    search goes on in the background past that, and what it does not reach stays RUNNING until
    the sweep's resume, or the job's supervisor, ends it.
    """
    killed: list[int] = []

    def kill() -> None:
        from prefect_mltrain.tracking.client import mlflow_client

        wanted = set(flow_run_ids)
        for uri in tracking_uris():
            with contextlib.suppress(Exception):  # one store unreachable: the others still count
                client = mlflow_client(tracking_uri=uri)
                experiments = [e.experiment_id for e in client.search_experiments()]
                # MLflow's search has no IN for tags: one search for every RUNNING run, matched here.
                for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000):
                    if run.data.tags.get("prefect.flow_run_id") in wanted:
                        client.set_tag(run.info.run_id, "mltrain.ended_by", reason)
                        client.set_terminated(run.info.run_id, "KILLED")
                        killed.append(1)

    thread = threading.Thread(target=kill, name="mltrain-orphaned-mlflow-runs", daemon=True)
    thread.start()
    thread.join(timeout)
    return len(killed)
