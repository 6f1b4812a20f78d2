"""The virtualenv/user-managed launch path of `train_job` next to the Docker one."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
from _docker import flow_run_log_text

from prefect_mltrain.blocks import TrainingEnvironment
from prefect_mltrain.errors import JobFailedError
from prefect_mltrain.flows.train_job import train_job


def test_job_failure_keeps_exit_code_across_processes() -> None:
    error = pickle.loads(pickle.dumps(JobFailedError("exited with code 4", 4, "boom")))
    assert (str(error), error.exit_code, error.stderr_tail) == ("exited with code 4", 4, "boom")


def test_user_managed_job_runs_on_this_python_with_live_logs(compute, tmp_path: Path) -> None:
    env = TrainingEnvironment(python_executable=sys.executable, environment_variables={"WHO": "venv-path"})
    state = train_job(
        command="python -c \"import os, sys; print(os.environ['WHO'], sys.executable)\"",
        source_directory=str(tmp_path),
        environment=env,
        compute=compute,
        return_state=True,
    )
    state.result()
    assert f"venv-path {sys.executable}" in flow_run_log_text(state.state_details.flow_run_id, "venv-path")


def test_user_managed_job_failure_has_exit_code_and_stderr(compute, tmp_path: Path) -> None:
    state = train_job(
        command="echo not-good >&2; exit 4",
        source_directory=str(tmp_path),
        compute=compute,
        return_state=True,
    )
    with pytest.raises(JobFailedError) as info:
        state.result()
    assert info.value.exit_code == 4 and "not-good" in str(info.value)
