"""Registration under concurrency and lookups of what is not there: clear errors, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from prefect_mltrain.blocks import MlflowTracking, RegisteredModel
from prefect_mltrain.errors import ModelNotFoundError

REGISTER = """
import sys, time
from prefect_mltrain.blocks import MlflowTracking
from prefect_mltrain.tasks.register import register
name, run_id, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, at - time.time()))  # all three start at the same instant
print(register(MlflowTracking(), name, run_id, "model", "sklearn").version)
"""


@pytest.fixture(scope="module")
def logged_model_run() -> str:
    """An MLflow run holding a small scikit-learn model folder under `model/`."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from prefect_mltrain.tracking.models import save_sklearn_model

    X, y = load_iris(return_X_y=True)
    tracking = MlflowTracking()
    client = tracking.client()
    run = client.create_run(tracking.ensure_experiment("registry-faults"))
    with tempfile.TemporaryDirectory() as tmp:
        save_sklearn_model(LogisticRegression(max_iter=300).fit(X, y), Path(tmp) / "model")
        client.log_artifacts(run.info.run_id, str(Path(tmp) / "model"), "model")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.parametrize("round_", [1, 2])
def test_three_concurrent_first_registrations_give_versions_one_to_three(logged_model_run, round_):
    name = f"race-{uuid.uuid4().hex[:8]}"
    at = time.time() + 8  # after the three interpreters have imported everything
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER, name, logged_model_run, str(at)],
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (_out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-3000:]
    versions = sorted(int(out.split()[-1]) for out, _ in results)
    assert versions == [1, 2, 3]
    mlflow_versions = MlflowTracking().client().search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in mlflow_versions) == [1, 2, 3]
    assert [RegisteredModel.version_of(name, v).version for v in (1, 2, 3)] == [1, 2, 3]
    assert RegisteredModel.version_of(name).version == 3  # the alias on the newest


def test_missing_models_and_versions_say_what_there_is(logged_model_run):
    from prefect_mltrain.tasks.register import register

    name = f"known-{uuid.uuid4().hex[:8]}"
    register(MlflowTracking(), name, logged_model_run, "model", "sklearn")
    with pytest.raises(ModelNotFoundError, match=rf"Model '{name}' has no version 99 \(its versions: 1\)"):
        RegisteredModel.version_of(name, 99)
    with pytest.raises(ModelNotFoundError, match=r"No registered model 'no-such-model' \(registered: .*" + name):
        RegisteredModel.load("no-such-model")
    with pytest.raises(ValueError):  # still a ValueError, as Prefect's own
        RegisteredModel.load("no-such-model")
    with pytest.raises(ValueError, match=r"`version`=0 must be a whole number from 1"):
        RegisteredModel.version_of(name, 0)


def test_cli_model_commands_on_missing_models_print_one_error_line():
    exe = Path(sys.executable).with_name("prefect-mltrain")
    for argv in (["model", "show", "no-such-model"], ["model", "serve", "no-such-model", "--version", "3"]):
        out = subprocess.run([str(exe), *argv], capture_output=True, text=True, env=os.environ, timeout=120)
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr, out.stderr
        assert "error: No registered model 'no-such-model'" in out.stderr, out.stderr


def test_serving_on_an_impossible_port_fails_at_once():
    from prefect_mltrain.errors import ConfigurationError
    from prefect_mltrain.registry import serving

    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"`port`=99999 is not a TCP port \(1-65535\)"):
        serving.serve(object(), port=99999)
    assert time.monotonic() - started < 2
