"""Flow runs whose process was SIGKILLed end Crashed at the next flow this package starts (`tracking.orphans`).

Real processes and real signals: a flow run owned by a process that is then killed, and a
sweep run from a plain Python script that is killed under running trials and never resumed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import mlflow_runs_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process identity reads /proc")


def slow_trial(params: dict[str, Any], context: Any) -> dict[str, float]:
    """A 3 s trial that leaves `<number>.start` (its pid) and `<number>.done` in `$ORPHANS_DIR`."""
    folder = Path(os.environ["ORPHANS_DIR"])
    (folder / f"{context.number}.start").write_text(str(os.getpid()))
    for step in range(1, 7):
        time.sleep(0.5)
        context.report({"score": float(params["x"]) * step}, step=step)
    (folder / f"{context.number}.done").write_text("done")
    return {"score": float(params["x"])}


def _wait_for(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def _gone(pid: int) -> bool:
    from prefect_mltrain.system.identity import start_time

    return start_time(pid) is None


def test_a_killed_process_s_flow_run_ends_crashed_and_a_live_one_s_is_left(prefect_client, unique_name):
    from prefect import flow, task
    from prefect.states import Running

    from prefect_mltrain.blocks import MlflowTracking
    from prefect_mltrain.flows import stop_model_server
    from prefect_mltrain.flows._embedded import end_orphaned_runs
    from prefect_mltrain.system.identity import ProcessIdentity, start_time
    from prefect_mltrain.tracking.orphans import owner_tags

    @flow(name="orphan-probe")
    def probe() -> None:
        """Only its runs are made here, by hand."""

    @task(name="orphan-probe-task")
    def probe_task() -> None:
        """Only its runs are made here, by hand."""

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        identity = dataclasses.replace(ProcessIdentity.current(), pid=owner.pid, start=start_time(owner.pid))
        flow_run = prefect_client.create_flow_run(
            probe, name=unique_name, tags=["team", *owner_tags(identity)], state=Running()
        )
        task_run = prefect_client.create_task_run(probe_task, flow_run.id, dynamic_key="0", state=Running())
        tracking = MlflowTracking()
        client = tracking.client()
        mlflow_run = client.create_run(
            tracking.ensure_experiment(), tags={"prefect.flow_run_id": str(flow_run.id)}, run_name=unique_name
        )

        checked = time.monotonic()
        end_orphaned_runs()  # its process lives: left alone
        check = time.monotonic() - checked
        assert prefect_client.read_flow_run(flow_run.id).state.is_running()

        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        began = time.monotonic()
        assert stop_model_server(f"{unique_name}-none") is False  # the next flow of this package
        took = time.monotonic() - began
    finally:
        owner.kill()
        owner.wait()
    ended = prefect_client.read_flow_run(flow_run.id)
    print(
        f"\norphan: a check with nothing to end {check * 1000:.0f} ms; the next flow (with the check) {took:.2f} s; "
        f"state {ended.state.name}: {ended.state.message}"
    )
    assert ended.state.is_crashed() and f"pid {owner.pid}" in ended.state.message
    assert "next prefect-mltrain flow" in ended.state.message
    assert prefect_client.read_task_run(task_run.id).state.is_crashed()
    assert client.get_run(mlflow_run.info.run_id).info.status == "KILLED"
    assert "team" in ended.tags  # nothing else about it changed


SWEEP_SCRIPT = """
import sys
from prefect_mltrain.blocks import DaskCompute
from prefect_mltrain.flows import sweep
from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform
from test_orphans import slow_trial

sweep(
    trial=FunctionTrial(slow_trial),
    search_space={"x": uniform(0, 1)},
    objective=Objective("score"),
    limits=Limits(max_total_trials=6, max_concurrent_trials=2),
    seed=5,
    name=sys.argv[1],
    compute=DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
    ),
)
"""


@pytest.mark.timeout(400)
def test_a_sweep_killed_and_never_resumed_is_ended_by_the_next_flow(prefect_client, unique_name, tmp_path):
    """A sweep called from Python, SIGKILLed under running trials, not resumed: nothing stays Running."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags

    from prefect_mltrain.flows import stop_model_server

    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT, unique_name],
        env={
            **os.environ,
            "ORPHANS_DIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        running = _wait_for(
            lambda: [f for f in tmp_path.glob("*.start") if not (tmp_path / f"{f.stem}.done").exists()],
            240,
            "a trial of the sweep is running",
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    workers = {int(f.read_text()) for f in tmp_path.glob("*.start")}
    _wait_for(lambda: all(_gone(pid) for pid in workers), 60, "the killed sweep's Dask workers died with it")

    def sweep_runs() -> list[Any]:
        runs = prefect_client.read_flow_runs(limit=200)
        return [r for r in runs if r.flow_id and (r.parameters or {}).get("name") == unique_name]

    (sweep_run,) = sweep_runs()
    trials = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{unique_name}"])), limit=200
    )
    left_running = [r.name for r in [sweep_run, *trials] if not r.state.is_final()]
    assert sweep_run.state.is_running() and left_running, "the kill left runs Running (nothing to end)"

    began = time.monotonic()
    stop_model_server(f"{unique_name}-none")  # any flow of this package, called from Python
    took = time.monotonic() - began

    sweep_run = prefect_client.read_flow_run(sweep_run.id)
    trials = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in trials])), limit=200
    )
    slots = prefect_client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[sweep_run.id])))
    mlflow_runs = [m for r in [sweep_run, *trials] for m in mlflow_runs_of(str(r.id))]
    still = [r.name for r in [sweep_run, *trials] if not r.state.is_final()]
    print(
        f"\nkilled sweep: {len(running)} trial(s) running at the kill, {len(left_running)} flow run(s) left Running, "
        f"{len(still)} after the next flow ({took:.2f} s); MLflow runs "
        f"{sorted(m.info.status for m in mlflow_runs)}; slots {sorted(t.state.name for t in slots)}"
    )
    assert sweep_run.state.is_crashed() and f"pid {proc.pid}" in sweep_run.state.message
    assert still == [] and all(t.state.is_final() for t in slots)
    assert sum(r.state.is_crashed() for r in trials) >= len(running)  # those the kill cut short
    assert mlflow_runs and {m.info.status for m in mlflow_runs} <= {"KILLED", "FINISHED"}
    assert [m.info.status for m in mlflow_runs if m.data.tags.get("mltrain.sweep_role") == "parent"] == ["KILLED"]


@pytest.mark.unit
def test_with_options_keeps_the_package_s_entry_point():
    """`flow.with_options(...)` is still called through `EmbeddedServerFlow` (owner tags, the check above)."""
    from prefect_mltrain.flows import sweep, train_job
    from prefect_mltrain.flows._embedded import EmbeddedServerFlow

    for flow in (train_job.with_options(name="renamed"), sweep.with_options(retries=1)):
        assert isinstance(flow, EmbeddedServerFlow)
    assert train_job.with_options(name="renamed").name == "renamed"


@pytest.mark.unit
def test_a_flow_called_in_a_worker_names_the_worker_not_the_submitter():
    """Owner tags inherited from the process that submitted a task are replaced, never added to."""
    from prefect.context import TagsContext, tags

    from prefect_mltrain.system.identity import ProcessIdentity
    from prefect_mltrain.tracking.orphans import owned_by_this_process, owner_of, owner_tags

    submitter = dataclasses.replace(ProcessIdentity.current(), pid=1, start=1)
    with tags("team", *owner_tags(submitter)), owned_by_this_process():
        current = TagsContext.get().current_tags
    assert "team" in current and owner_of(current) == ProcessIdentity.current()
