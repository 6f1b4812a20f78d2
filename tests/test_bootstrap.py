"""The sitecustomize on every job's PYTHONPATH: `import mlflow` activates the job's run, waiting for its id.

A stand-in `mlflow` package keeps these fast; train_job's tests use the real one.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from prefect_mltrain.jobs.launch import BOOTSTRAP_DIR

FAKE_MLFLOW = """
_active = None
def active_run():
    return _active
def start_run(run_id):
    global _active
    _active = run_id
"""
SCRIPT = """
import os
print("before", os.environ.get("MLFLOW_RUN_ID"), flush=True)
import mlflow
print("after", os.environ["MLFLOW_RUN_ID"], os.environ["MLFLOW_EXPERIMENT_ID"], mlflow.active_run(), flush=True)
"""


@pytest.fixture
def job(tmp_path):
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "__init__.py").write_text(FAKE_MLFLOW)
    (tmp_path / "job.py").write_text(SCRIPT)

    def run(**env: str) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLTRAIN_"))}
        clean["PYTHONPATH"] = os.pathsep.join([str(BOOTSTRAP_DIR), str(tmp_path)])
        return subprocess.run(
            [sys.executable, str(tmp_path / "job.py")], capture_output=True, text=True, env={**clean, **env}, timeout=60
        )

    return run


def test_import_waits_for_the_run_id_file(job, tmp_path):
    run_file = tmp_path / "run" / "run.json"

    def write_later():
        time.sleep(1)
        run_file.parent.mkdir()
        run_file.write_text(json.dumps({"run_id": "abc", "experiment_id": "3"}))

    writer = threading.Thread(target=write_later)
    writer.start()
    out = job(MLTRAIN_RUN_ID_FILE=str(run_file))
    writer.join()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["before None", "after abc 3 abc"]


def test_a_run_id_that_never_comes_fails_the_import_clearly(job, tmp_path):
    out = job(MLTRAIN_RUN_ID_FILE=str(tmp_path / "never.json"), MLTRAIN_RUN_ID_TIMEOUT="0.5")
    assert out.returncode == 1
    assert (
        f"TimeoutError: prefect-mltrain: this job's MLflow run id did not arrive in {tmp_path / 'never.json'} within 0.5 s"
        in out.stderr
    )
    assert "Fix: raise MLTRAIN_RUN_ID_TIMEOUT" in out.stderr


def test_a_timeout_that_is_not_a_number_is_named(job, tmp_path):
    out = job(MLTRAIN_RUN_ID_FILE=str(tmp_path / "run.json"), MLTRAIN_RUN_ID_TIMEOUT="2m")
    assert "MLTRAIN_RUN_ID_TIMEOUT must be a number of seconds, but got '2m'." in out.stderr


def test_a_run_that_could_not_be_created_fails_the_import_at_once(job, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"error": "ConnectionError: tracking server down"}))
    out = job(MLTRAIN_RUN_ID_FILE=str(tmp_path / "run.json"))
    assert out.returncode == 1
    assert "this job's MLflow run could not be created: ConnectionError: tracking server down" in out.stderr


def test_a_run_id_given_up_front_is_used_as_before(job):
    out = job(MLFLOW_RUN_ID="given", MLFLOW_EXPERIMENT_ID="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["before given", "after given 1 given"]
