"""Schedules fire: the server's scheduler (not a manual run) makes the runs, a worker completes them.

A deployment with a paused short interval schedule, as `nightly-iris` in prefect.yaml, is turned
on with the README's commands (`prefect deployment schedule ls` / `resume`); the scheduler then
makes runs (every 5 s here, `PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS` in conftest) and a
process worker picks them up and completes them.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from _docker import flow_run_log_text
from _workers import ROOT, prefect_cli, wait_for, worker

pytestmark = pytest.mark.slow

POOL = "mltrain-schedules"
INTERVAL = 15


def _schedule_id(deployment: str) -> str:
    out = prefect_cli("deployment", "schedule", "ls", deployment).stdout
    ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)
    assert ids, f"no schedule id in:\n{out}"
    return ids[0]


def _runs(prefect_client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return prefect_client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def test_interval_schedule_makes_runs_that_a_worker_completes(prefect_client, tmp_path) -> None:
    name = f"every-{INTERVAL}s-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "src"
    source.mkdir()
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(
        f"""
name: schedules-test
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: {ROOT}
deployments:
  - name: {name}
    entrypoint: flows/train_job.py:train_job
    work_pool: {{name: {POOL}}}
    parameters:
      command: "python -c \\"print('scheduled-run-ok')\\""
      source_directory: {source}
    schedules:
      - interval: {INTERVAL}
        active: false
"""
    )
    prefect_cli("work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_cli("deploy", "--all", "--prefect-file", str(prefect_file))
    full_name = f"train-job/{name}"
    deployment = prefect_client.read_deployment_by_name(full_name)
    assert deployment.schedules and deployment.schedules[0].active is False
    try:
        with worker(POOL, "process", tmp_path):
            time.sleep(6)  # a scheduler loop: a paused schedule makes no runs
            assert _runs(prefect_client, deployment.id) == []
            started = time.monotonic()
            prefect_cli("deployment", "schedule", "resume", full_name, _schedule_id(full_name))
            assert prefect_client.read_deployment(deployment.id).schedules[0].active is True

            def completed():
                runs = [r for r in _runs(prefect_client, deployment.id) if r.state and r.state.is_completed()]
                return runs if len(runs) >= 2 else None

            done = wait_for(completed, timeout=240, interval=2, what="two scheduled runs to complete")
            elapsed = time.monotonic() - started
            prefect_cli("deployment", "schedule", "pause", full_name, _schedule_id(full_name))
            print(f"resume to 2 scheduled runs completed: {elapsed:.1f} s")
            assert all(r.auto_scheduled for r in done), "runs not made by the scheduler"
            assert all(r.work_pool_name == POOL for r in done)
            # They fire on the interval: distinct scheduled times, INTERVAL s apart.
            times = sorted(r.expected_start_time for r in done)
            assert (times[1] - times[0]).total_seconds() == pytest.approx(INTERVAL, abs=1), times
            assert "scheduled-run-ok" in flow_run_log_text(done[0].id, must_contain="scheduled-run-ok")
    finally:
        prefect_client.delete_deployment(deployment.id)  # and its remaining scheduled runs


def test_nightly_iris_is_turned_on_and_off_from_the_cli(prefect_client) -> None:
    """The README's commands on the real `nightly-iris`: resume makes its next 02:00 UTC run."""
    prefect_cli("work-pool", "create", "mltrain-process", "--type", "process", "--overwrite")
    prefect_cli("deploy", "--name", "nightly-iris")
    full_name = "train-sklearn/nightly-iris"
    deployment = prefect_client.read_deployment_by_name(full_name)
    assert deployment.schedules[0].active is False and deployment.schedules[0].schedule.cron == "0 2 * * *"
    schedule_id = _schedule_id(full_name)
    prefect_cli("deployment", "schedule", "resume", full_name, schedule_id)
    try:

        def scheduled():
            runs = [r for r in _runs(prefect_client, deployment.id) if r.state and r.state.is_scheduled()]
            return runs or None

        runs = wait_for(scheduled, timeout=60, interval=1, what="nightly-iris's scheduled runs")
        first = min(r.expected_start_time for r in runs)
        assert (first.hour, first.minute) == (2, 0) and first.utcoffset().total_seconds() == 0
    finally:
        prefect_cli("deployment", "schedule", "pause", full_name, schedule_id)
    assert prefect_client.read_deployment(deployment.id).schedules[0].active is False
    # Pausing removes the runs it had scheduled.
    wait_for(
        lambda: not [r for r in _runs(prefect_client, deployment.id) if r.state.is_scheduled()],
        timeout=30,
        what="the paused schedule's runs to be removed",
    )
