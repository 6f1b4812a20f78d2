"""Flows that find the embedded server when called from a plain Python script, as the CLI does.

With no Prefect API configured (no `PREFECT_API_URL`, no profile that sets one), Prefect would
run a flow on a temporary server of its own: slow to start, gone with the script, and on
`~/.prefect`'s SQLite file. A top-level call of one of this package's flows instead finds the
project's local server (starting it if needed, `server.stack.ensure_server`) and points this
process and the processes it starts at it. Calls inside a flow or task run, and processes with
an API configured, are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow


def _connect_if_unconfigured() -> None:
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    if FlowRunContext.get() or TaskRunContext.get() or PREFECT_API_URL.value():
        return
    from prefect_mltrain._compat.prefect_settings import refresh_from_environment
    from prefect_mltrain.server.stack import ensure_server, use_server

    use_server(ensure_server())  # the environment: Dask workers started later inherit it
    refresh_from_environment()  # this process's Prefect settings, every thread


class EmbeddedServerFlow(Flow):  # type: ignore[type-arg]
    """A `prefect.Flow` whose top-level calls run on the embedded server unless an API is set."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _connect_if_unconfigured()
        return super().__call__(*args, **kwargs)


def flow(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`prefect.flow(**options)`, making an `EmbeddedServerFlow`."""

    def decorate(fn: Callable[..., Any]) -> Any:
        return EmbeddedServerFlow(fn, **options)

    return decorate
