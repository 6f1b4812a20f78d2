"""`train_job` in a Docker environment: real engine, real Prefect server, real MLflow store."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from _docker import BASE_IMAGE, containers_named, flow_run_log_text, requires_docker

from prefect_mltrain.blocks import MlflowTracking, TrainingEnvironment
from prefect_mltrain.errors import JobFailedError
from prefect_mltrain.flows.train_job import train_job
from prefect_mltrain.jobs.containers import gpu_arguments

pytestmark = requires_docker

TRAIN = """\
import os, sys
import mlflow

print("hello from the container", sys.executable, os.environ["GREETING"], flush=True)
print("a warning line", file=sys.stderr, flush=True)
mlflow.log_metric("accuracy", 0.93)
with open("outputs/model.txt", "w") as f:
    f.write("weights")
with open("logs/extra.log", "w") as f:
    f.write("log")
"""


def test_script_runs_in_the_image_with_mlflow_outputs_and_live_logs(compute, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    # mlflow-skinny plus SQLAlchemy/Alembic is enough for the SQLite store and much smaller
    # than mlflow; same release as the host so the store's schema matches.
    mlflow_version = importlib.metadata.version("mlflow")
    env = TrainingEnvironment(
        docker_image=BASE_IMAGE,
        pip_requirements=[f"mlflow-skinny=={mlflow_version}", "sqlalchemy", "alembic"],
        environment_variables={"GREETING": "hi-there"},
    )
    state = train_job(
        script="train.py",
        source_directory=str(source),
        environment=env,
        compute=compute,
        return_state=True,
    )
    result = state.result()
    assert result.metrics == {"accuracy": 0.93}
    assert (Path(result.outputs_dir) / "model.txt").read_text() == "weights"
    client = MlflowTracking().client()
    assert [a.path for a in client.list_artifacts(result.mlflow_run_id, "outputs")] == ["outputs/model.txt"]
    assert "logs/extra.log" in [a.path for a in client.list_artifacts(result.mlflow_run_id, "logs")]
    logs = flow_run_log_text(state.state_details.flow_run_id, "hello from the container")
    assert "hello from the container /opt/mltrain-env/bin/python hi-there" in logs
    assert "a warning line" in logs
    assert containers_named("mltrain-job-") == []


def test_failing_command_fails_the_flow_with_exit_code_and_stderr(compute, tmp_path: Path) -> None:
    # The base image used as is: user-managed, nothing is built.
    env = TrainingEnvironment(docker_image=BASE_IMAGE)
    state = train_job(
        command="echo working; echo about-to-fail >&2; exit 7",
        source_directory=str(tmp_path),
        environment=env,
        compute=compute,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(JobFailedError) as info:
        state.result()
    assert info.value.exit_code == 7
    assert "code 7" in str(info.value) and "about-to-fail" in str(info.value)
    assert "working" in flow_run_log_text(state.state_details.flow_run_id, "working")
    assert containers_named("mltrain-job-") == []


def test_timeout_kills_and_removes_the_container(compute, tmp_path: Path) -> None:
    env = TrainingEnvironment(docker_image=BASE_IMAGE)
    state = train_job(
        command="echo started; sleep 60",
        source_directory=str(tmp_path),
        environment=env,
        compute=compute,
        timeout_seconds=3,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(JobFailedError, match="timeout_seconds"):
        state.result()
    assert containers_named("mltrain-job-") == []


def test_gpu_request_follows_gpus_per_trial() -> None:
    assert gpu_arguments(0) == []
    assert gpu_arguments(2) == ["--gpus", "2"]
    assert gpu_arguments(1, "1,3") == ["--gpus", '"device=1"']
