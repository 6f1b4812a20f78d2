"""The entry point every flow of this package goes through when it is called.

A top-level call (not inside a flow or task run):

- finds the embedded server when no Prefect API is configured. With no `PREFECT_API_URL` (and
  no profile that sets one), Prefect would run a flow on a temporary server of its own: slow to
  start, gone with the script, and on `~/.prefect`'s SQLite file. Instead the project's local
  server is found (started if needed, `server.stack.ensure_server`) and this process and the
  processes it starts are pointed at it;
- ends what dead processes of this machine left running (`tracking.orphans`): flow runs of
  this package whose process was killed end Crashed and their MLflow runs KILLED. One query
  when there is nothing to end.

Every call, nested ones too, tags the flow runs it creates with the process that runs them
(`tracking.orphans.owned_by_this_process`), which is what the check above reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prefect import Flow

logger = logging.getLogger("prefect_mltrain.flows")


def _connect_if_unconfigured() -> None:
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect_mltrain._compat.prefect_settings import refresh_from_environment
    from prefect_mltrain.server.stack import ensure_server, use_server

    use_server(ensure_server())  # the environment: Dask workers started later inherit it
    refresh_from_environment()  # this process's Prefect settings, every thread


def end_orphaned_runs() -> int:
    """End the flow runs of this package whose process died on this machine (Crashed; MLflow KILLED).

    Called by every top-level flow call before its flow run starts; best effort (a failure is
    logged, never raised). Returns how many flow runs it ended.
    """
    import os

    from prefect_mltrain.tracking import orphans

    reason = f"ended by the next prefect-mltrain flow started on this machine (pid {os.getpid()})"
    try:
        ended = orphans.end_orphaned_runs(reason)
        if not ended:
            return 0
        killed = orphans.kill_mlflow_runs([str(r.id) for r in ended], lambda: _tracking_uris(ended), reason)
    except Exception as exc:  # noqa: BLE001 - checking must never stop the user's flow
        logger.warning("Could not check for flow runs left running by dead processes: %s", exc)
        return 0
    logger.warning(
        "Ended %d flow run(s) whose process died on this machine (Crashed: %s) and %d MLflow run(s) of them (KILLED).",
        len(ended),
        ", ".join(sorted(r.name for r in ended)),
        killed,
    )
    return len(ended)


def _tracking_uris(runs: list[Any]) -> list[str]:
    """The MLflow stores the flow runs `runs` logged to: their `tracking` parameter's, else the default one."""
    from prefect_mltrain.blocks.tracking import MlflowTracking

    uris: set[str] = set()
    default = False
    for run in runs:
        value = (run.parameters or {}).get("tracking")
        try:
            if isinstance(value, str):  # a saved block's name
                uris.add(MlflowTracking.load(value).resolved_tracking_uri())  # type: ignore[union-attr]
                continue
            if isinstance(value, dict) and value.get("tracking_uri"):  # a block's fields
                uris.add(str(value["tracking_uri"]))
                continue
        except Exception:  # noqa: BLE001 - a block deleted since: look in the default store
            pass
        default = True  # no store of its own (a trial: its sweep's is searched too)
    if default:
        uris.add(MlflowTracking().resolved_tracking_uri())  # the project's server, started if need be
    return sorted(uris)


class EmbeddedServerFlow(Flow):  # type: ignore[type-arg]
    """A `prefect.Flow` whose top-level calls run on the embedded server unless an API is set, end
    what dead processes of this machine left running, and whose runs name the process that runs them."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from prefect.context import FlowRunContext, TaskRunContext

        from prefect_mltrain.tracking.orphans import owned_by_this_process

        if not (FlowRunContext.get() or TaskRunContext.get()):
            _connect_if_unconfigured()
            end_orphaned_runs()
        with owned_by_this_process():
            return super().__call__(*args, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> Any:
        """`Flow.with_options`, still an `EmbeddedServerFlow` (Prefect's makes a plain `Flow`)."""
        new = super().with_options(*args, **kwargs)
        new.__class__ = type(self)  # no state of its own: the copy only gains `__call__`
        return new


def flow(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`prefect.flow(**options)`, making an `EmbeddedServerFlow`."""

    def decorate(fn: Callable[..., Any]) -> Any:
        return EmbeddedServerFlow(fn, **options)

    return decorate
