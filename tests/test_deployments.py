"""prefect.yaml works as a user runs it: deploy --all, a process worker, `prefect deployment run`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _prefect(*args, timeout=300):
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PWD": str(ROOT)},
        timeout=timeout,
    )
    assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def deployed():
    _prefect("work-pool", "create", "mltrain-process", "--type", "process", "--overwrite")
    _prefect("work-pool", "create", "mltrain-docker", "--type", "docker", "--overwrite")
    _prefect("deploy", "--all")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "mltrain-process", "--limit", "2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield
    worker.terminate()
    worker.wait(timeout=30)


def test_every_deployment_is_created(deployed, prefect_client):
    names = {f"{d.name}" for d in prefect_client.read_deployments()}
    assert {
        "iris",
        "example-job",
        "example",
        "iris-classifier",
        "iris-logreg",
        "nightly-iris",
        "train-job-docker",
        "images",
        "score-images",
    } <= names
    nightly = next(d for d in prefect_client.read_deployments() if d.name == "nightly-iris")
    assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"


def test_sweep_deployment_runs_from_the_cli(deployed):
    out = _prefect(
        "deployment",
        "run",
        "sweep/iris-logreg",
        "--params",
        json.dumps(
            {
                "name": "deploy-sweep",
                "limits": {"max_total_trials": 2, "max_concurrent_trials": 1},
                "register_best_model_as": "deploy-sweep-best",
            }
        ),
        "--watch",
        "--watch-timeout",
        "300",
    )
    assert "Completed" in out
    from prefect_mltrain.blocks import RegisteredModel

    assert RegisteredModel.load("deploy-sweep-best").metrics["accuracy"] > 0.8


def test_job_file_deployment_runs(deployed):
    out = _prefect(
        "deployment",
        "run",
        "run-job-file/example",
        "--params",
        json.dumps({"overrides": ["inputs.C=0.3"]}),
        "--watch",
        "--watch-timeout",
        "240",
    )
    assert "Completed" in out
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    experiment = client.get_experiment_by_name("iris-job-files")
    runs = client.search_runs([experiment.experiment_id], filter_string="params.C = '0.3'")
    assert runs and runs[0].data.tags["source"] == "job-file" and runs[0].info.run_name == "iris-from-yaml"


def test_deployment_run_with_params_trains_and_registers(deployed, unique_name):
    out = _prefect(
        "deployment",
        "run",
        "train-job/example-job",
        "--param",
        f"model_name={unique_name}",
        "--params",
        json.dumps({"arguments": ["--C", "0.25"]}),
        "--watch",
        "--watch-timeout",
        "240",
    )
    assert "Completed" in out
    from prefect_mltrain.blocks import MlflowTracking, RegisteredModel

    entry = RegisteredModel.load(unique_name)
    run = MlflowTracking().client().get_run(entry.mlflow_run_id)
    assert run.data.params["C"] == "0.25" and run.data.metrics["test_accuracy"] > 0.8
