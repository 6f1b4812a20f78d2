"""Faults of a command job, with real processes and real signals: nothing left running anywhere.

A job whose flow process is SIGKILLed must not go on training unsupervised: its script dies
within seconds, its MLflow run ends KILLED and its flow runs leave Running. Ctrl-C on an
attached `prefect-mltrain job run` stops the whole process tree, marks Prefect Cancelled and
MLflow KILLED, and says so in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from helpers import mlflow_runs_of

SCRIPT = """
import os, sys, time, subprocess
import mlflow
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a grandchild
open(os.environ["PIDS_FILE"], "w").write(f"{os.getpid()} {helper.pid}")
for step in range(600):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    print("step", step, flush=True)
    time.sleep(0.5)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def _start_job(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(SCRIPT)
    (tmp_path / "job.yml").write_text(
        "command: python train.py\ncode: src\nexperiment_name: faults\ndisplay_name: killed-job\n"
    )
    pids_file = tmp_path / "pids"
    exe = Path(sys.executable).with_name("prefect-mltrain")
    proc = subprocess.Popen(
        [str(exe), "job", "run", str(tmp_path / "job.yml")],
        env={**os.environ, "PIDS_FILE": str(pids_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal gives it; Ctrl-C goes to the group
    )
    pids = _wait_for(lambda: pids_file.exists() and pids_file.read_text().split(), 180, "the script started")
    return proc, [int(p) for p in pids]


def _job_flow_runs(prefect_client, started: float):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime
    from prefect.client.schemas.sorting import FlowRunSort

    since = datetime.fromtimestamp(started, tz=timezone.utc)
    runs = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)), sort=FlowRunSort.START_TIME_ASC
    )
    return [r for r in runs if "killed-job" in r.name or any(t.startswith("mltrain-cli:") for t in r.tags)]


def _states(prefect_client, started: float) -> dict[str, str]:
    return {r.name: r.state.type.value for r in _job_flow_runs(prefect_client, started)}


@pytest.mark.timeout(400)
def test_a_killed_job_process_takes_its_training_with_it(tmp_path, prefect_client):
    started = time.time()
    proc, (script_pid, helper_pid) = _start_job(tmp_path)
    runs = _job_flow_runs(prefect_client, started)
    assert runs, "the job's flow runs exist"

    os.kill(proc.pid, signal.SIGKILL)  # the flow's process, nothing else
    killed = time.monotonic()
    _wait_for(lambda: not _alive(script_pid) and not _alive(helper_pid), 15, "the script and its child died")
    print(f"script and its child gone {time.monotonic() - killed:.1f} s after the kill")

    def all_ended():
        states = _states(prefect_client, started)
        return states if states and all(s not in ("RUNNING", "PENDING") for s in states.values()) else None

    states = _wait_for(all_ended, 30, f"every flow run left Running: {_states(prefect_client, started)}")
    assert set(states.values()) == {"CRASHED"}, states
    train_runs = [r for r in _job_flow_runs(prefect_client, started) if r.flow_id and "killed-job" not in r.name]
    mlflow_runs = [m for r in _job_flow_runs(prefect_client, started) for m in mlflow_runs_of(str(r.id))]
    assert mlflow_runs, train_runs
    _assert_all_killed(mlflow_runs)


def _assert_all_killed(mlflow_runs) -> None:
    """Every one of `mlflow_runs` ends (within 20 s), and ends KILLED."""
    statuses = _wait_for(
        lambda: (
            (s := {m.info.run_id: m.info.status for m in _refresh(mlflow_runs)}) and "RUNNING" not in s.values() and s
        ),
        20,
        "the MLflow run ended",
    )
    assert set(statuses.values()) == {"KILLED"}, statuses


def _refresh(runs):
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    return [client.get_run(r.info.run_id) for r in runs]


@pytest.mark.timeout(400)
def test_ctrl_c_cancels_the_job_and_stops_its_processes(tmp_path, prefect_client):
    started = time.time()
    proc, (script_pid, helper_pid) = _start_job(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the foreground group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.startswith("Cancelled")]
    assert len(said) == 1, err
    _wait_for(lambda: not _alive(script_pid) and not _alive(helper_pid), 15, "the script and its child died")
    states = _wait_for(lambda: _states(prefect_client, started), 10, "flow runs")
    assert set(states.values()) == {"CANCELLED"}, states
    mlflow_runs = [m for r in _job_flow_runs(prefect_client, started) for m in mlflow_runs_of(str(r.id))]
    _assert_all_killed(mlflow_runs)


def test_a_negative_timeout_is_refused_before_the_job_starts(tmp_path):
    from prefect_mltrain.errors import ConfigurationError
    from prefect_mltrain.flows import train_job

    marker = tmp_path / "ran"
    with pytest.raises(ConfigurationError, match=r"`timeout_seconds`=-5(\.0)? must be a positive number of seconds"):
        train_job(command=f"touch {marker}", source_directory=str(tmp_path), timeout_seconds=-5)
    assert not marker.exists()
