"""Flow-run heartbeats that stop when the run ends, not up to a second later.

Prefect 3.8's flow engine beats from a thread that sleeps in whole seconds and checks for the
end of the run between sleeps; a sync flow joins that thread on exit, so every flow run
returns on average half a second (at worst a second) after its body ended. For a sweep or a
job that is pure waiting. `install()` puts in the same heartbeat thread (same interval, same
event, same check for a final state, same join) waiting on the stop event instead, so it ends
the moment the run does. Heartbeats are still sent: the UI and zombie-flow automations see
no difference.

It is installed when `prefect_mltrain.flows` is imported, and only on the Prefect releases it
was written against (the 3.8 series this package pins); elsewhere Prefect's own is kept.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PREFECT_SERIES = "3.8."
_original: Any = None


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Beat for `engine`'s flow run every `heartbeat_frequency` seconds until the block ends.

    The drop-in for `prefect.flow_engine._send_heartbeats`: the thread waits on the stop
    event between beats, so leaving the block ends it at once.
    """
    from prefect import flow_engine

    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, flow_engine.MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            run = engine.flow_run
            if run and run.state and run.state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            stop.wait(seconds)

    # The thread sees the caller's settings context (PREFECT_API_URL), as in Prefect's own.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True,
                              name="prefect-mltrain-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)


def install() -> bool:
    """Use `send_heartbeats` in Prefect's flow engine; return whether it is in use.

    Does nothing on a Prefect release outside the series it was written for, or one whose
    engine lacks the pieces it calls.
    """
    global _original
    import prefect
    from prefect import flow_engine

    current = getattr(flow_engine, "_send_heartbeats", None)
    if current is send_heartbeats:
        return True
    engine = getattr(flow_engine, "BaseFlowRunEngine", None)
    if (current is None or not prefect.__version__.startswith(_PREFECT_SERIES)
            or not all(hasattr(engine, a) for a in ("_build_heartbeat_event_template", "_emit_flow_run_heartbeat"))):
        return False
    _original = current
    flow_engine._send_heartbeats = send_heartbeats
    return True
