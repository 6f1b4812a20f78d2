"""`prefect-mltrain job list/show/stream/cancel` against real detached jobs, as `az ml job` users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("prefect-mltrain"))

LONG = """
import mlflow, time
for step in range(240):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    print("step", step, flush=True)
    time.sleep(0.5)
"""
QUICK = """
import mlflow
mlflow.log_metric("accuracy", 0.93)
print("hello from the quick job", flush=True)
"""


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=os.environ, timeout=timeout)


def _detach(tmp_path: Path, name: str, script: str) -> str:
    (tmp_path / name).mkdir()
    (tmp_path / name / "train.py").write_text(script)
    job = tmp_path / f"{name}.yml"
    job.write_text(
        f"command: python train.py\ncode: {name}\nexperiment_name: job-commands\n"
        f"display_name: {name}\ndescription: the {name} job, for the record\n"
    )
    out = _cli("job", "run", str(job), "--detach")
    assert out.returncode == 0, out.stderr[-2000:]
    said = out.stdout.split()
    job_id = said[said.index("job") + 1]
    assert len(job_id) == 36, out.stdout  # a flow run id, printed at once
    return job_id


@pytest.mark.timeout(300)
def test_a_detached_job_is_listed_streamed_shown_and_cancelled(tmp_path):
    job_id = _detach(tmp_path, "long", LONG)
    stream = subprocess.Popen(
        [EXE, "job", "stream", job_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    seen: list[str] = []
    deadline = time.monotonic() + 180
    assert stream.stdout is not None
    for line in stream.stdout:  # the script's lines arrive while it runs
        seen.append(line)
        if "step 3" in line or time.monotonic() > deadline:
            break
    assert any("step 3" in line for line in seen), seen[-20:]

    listing = _cli("job", "list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(job_id))
    assert "run-job-file" in row and "Running" in row, row

    cancel = _cli("job", "cancel", job_id)
    assert cancel.returncode == 0, cancel.stderr[-2000:]
    assert cancel.stdout.startswith(f"Cancelled {job_id}"), cancel.stdout
    rest, _ = stream.communicate(timeout=60)
    assert stream.returncode == 1 and f"Job {job_id} ended: Cancelled" in rest, rest[-2000:]

    shown = _cli("job", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["state"] == "Cancelled" and record["flow"] == "run-job-file"
    assert record["mlflow_status"] == "KILLED" and record["experiment"] == "job-commands"
    assert record["description"] == "the long job, for the record"
    assert record["parameters"]["path"].endswith("long.yml")
    assert record["metrics"]["loss"] > 0

    again = _cli("job", "cancel", job_id)
    assert again.returncode == 2 and "has ended already (Cancelled)" in again.stderr, again.stderr


@pytest.mark.timeout(300)
def test_stream_of_a_job_ends_with_its_state_and_shows_its_outputs(tmp_path):
    job_id = _detach(tmp_path, "quick", QUICK)
    stream = _cli("job", "stream", job_id, timeout=240)
    assert stream.returncode == 0, stream.stdout[-2000:] + stream.stderr[-2000:]
    assert "hello from the quick job" in stream.stdout
    assert stream.stdout.rstrip().endswith(f"Job {job_id} ended: Completed")
    record = json.loads(_cli("job", "show", job_id).stdout)
    assert record["state"] == "Completed" and record["metrics"] == {"accuracy": 0.93}
    assert "user_logs" in record["outputs"] and record["environment_hash"]


def test_unknown_job_ids_get_one_clear_error_line():
    for verb in ("show", "stream", "cancel"):
        out = _cli("job", verb, "not-a-job")
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "error: 'not-a-job' is not a job id" in out.stderr
    out = _cli("job", "show", "00000000-0000-0000-0000-000000000000")
    assert out.returncode == 2 and "No job has the id" in out.stderr, out.stderr
