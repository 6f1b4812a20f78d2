"""Flow runs keep their heartbeats and return as soon as their body ends."""

from __future__ import annotations

import time

import prefect.flow_engine
from prefect import flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from prefect_mltrain._compat import heartbeats
from prefect_mltrain.flows import use_fast_heartbeats


@flow(name="heartbeat-probe", persist_result=False)
def probe() -> float:
    return time.perf_counter()


def test_installed_only_when_asked():
    import subprocess
    import sys

    code = (
        "import prefect.flow_engine as e, prefect_mltrain.flows as f; "
        "print(e._send_heartbeats.__module__); f.use_fast_heartbeats(); print(e._send_heartbeats.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["prefect.flow_engine", "prefect_mltrain._compat.heartbeats"]  # nothing patched on import


def test_installed_on_the_pinned_prefect():
    """Fails loudly when a Prefect upgrade moves what the replacement needs (no silent fallback here)."""
    assert use_fast_heartbeats() is True
    assert prefect.flow_engine._send_heartbeats is heartbeats.send_heartbeats
    assert heartbeats.install() is True  # a second install changes nothing


def test_a_flow_still_beats_and_returns_when_its_body_ends(monkeypatch):
    use_fast_heartbeats()
    beats = []
    original = prefect.flow_engine.BaseFlowRunEngine._emit_flow_run_heartbeat

    def recording(engine, resource=None, related=None):
        beats.append(resource["prefect.resource.id"])
        return original(engine, resource, related)

    monkeypatch.setattr(prefect.flow_engine.BaseFlowRunEngine, "_emit_flow_run_heartbeat", recording)
    lags = []
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        for _ in range(3):
            body_ended = probe()
            lags.append(time.perf_counter() - body_ended)
    assert len(beats) == 3 and all(b.startswith("prefect.flow-run.") for b in beats)
    # Prefect 3.8's own thread sleeps out its current second before the run returns (about 1 s
    # for a body this short); finishing the run (one state write) takes a few tens of milliseconds.
    assert max(lags) < 0.5, lags


def test_no_heartbeat_thread_when_heartbeats_are_off(monkeypatch):
    started = []
    monkeypatch.setattr(heartbeats.threading, "Thread", lambda *a, **k: started.append(k) or None)

    class Engine:
        heartbeat_seconds = None

    with heartbeats.send_heartbeats(Engine()):
        pass
    assert started == []


@flow(name="heartbeat-thread-probe", persist_result=False)
def thread_probe() -> int:
    import threading

    return sum(t.name == heartbeats.THREAD_NAME for t in threading.enumerate())


def test_off_runs_flows_without_heartbeats_and_prefects_own_respects_it_too():
    use_fast_heartbeats()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        assert thread_probe() == 1
        with heartbeats.off():
            assert thread_probe() == 0
        assert thread_probe() == 1
        heartbeats.uninstall()
        try:
            assert prefect.flow_engine._send_heartbeats is not heartbeats.send_heartbeats
            with heartbeats.off():  # Prefect's own heartbeats: off through the setting
                from prefect.settings import get_current_settings

                assert get_current_settings().flows.heartbeat_frequency is None
        finally:
            assert heartbeats.install() is True
