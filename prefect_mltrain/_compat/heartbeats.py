"""Flow-run heartbeats that stop when the run ends, not up to a second later.

Prefect 3.8's flow engine beats from a thread that sleeps in whole seconds, counted from the
run's start, and checks for the end of the run between sleeps; a sync flow joins that thread
on exit, so every flow run returns up to a second after its body ended (a short flow almost
exactly a second: 1.00-1.04 s measured). For a sweep or a job that is pure waiting. `install()` puts in the same heartbeat thread (same interval, same
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

THREAD_NAME = "prefect-mltrain-heartbeat"
_PREFECT_SERIES = "3.8."
_original: Any = None
_off: contextvars.ContextVar[bool] = contextvars.ContextVar("prefect_mltrain_heartbeats_off", default=False)


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Beat for `engine`'s flow run every `heartbeat_frequency` seconds until the block ends.

    The drop-in for `prefect.flow_engine._send_heartbeats`: the thread waits on the stop
    event between beats, so leaving the block ends it at once.
    """
    from prefect import flow_engine

    seconds = engine.heartbeat_seconds
    if seconds is None or _off.get():
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
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True, name=THREAD_NAME)
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
    if (
        current is None
        or not prefect.__version__.startswith(_PREFECT_SERIES)
        or not all(hasattr(engine, a) for a in ("_build_heartbeat_event_template", "_emit_flow_run_heartbeat"))
    ):
        return False
    _original = current
    flow_engine._send_heartbeats = send_heartbeats
    return True


@contextmanager
def off() -> Iterator[None]:
    """No heartbeats for the flow runs that start in this block (in this thread).

    The sweep's trials run this way: a trial's state changes show it is alive, and a beat
    per trial would be one more event for the server to write. Costs nothing where
    `send_heartbeats` is installed; elsewhere it enters settings with heartbeats off.
    """
    from prefect import flow_engine

    if flow_engine._send_heartbeats is send_heartbeats:
        token = _off.set(True)
        try:
            yield
        finally:
            _off.reset(token)
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def uninstall() -> None:
    """Put Prefect's own heartbeats back (benchmarks measure stock Prefect with it)."""
    from prefect import flow_engine

    if _original is not None:
        flow_engine._send_heartbeats = _original
