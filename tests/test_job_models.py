"""Models from job outputs, as Azure ML registers them: a model-typed output, or `model create --path`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_mltrain.blocks import RegisteredModel
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.jobs.jobfile import load_job_file

EXE = str(Path(sys.executable).with_name("prefect-mltrain"))
SCRIPT = """
import sys, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
mlflow.sklearn.save_model(LogisticRegression(max_iter=300).fit(X, y), sys.argv[1], pip_requirements=["scikit-learn"])
print("saved", flush=True)
"""


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *argv], capture_output=True, text=True, env=os.environ, timeout=300)


def test_a_model_output_registers_and_model_create_registers_again(tmp_path, unique_name):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(SCRIPT)
    (tmp_path / "job.yml").write_text(
        "command: python train.py ${{outputs.model}}\ncode: src\n"
        f"outputs:\n  model: {{type: mlflow_model, name: {unique_name}}}\n"
    )
    out = _cli("job", "run", str(tmp_path / "job.yml"))
    assert out.returncode == 0, out.stderr[-3000:]
    entry = RegisteredModel.version_of(unique_name)
    assert entry.version == 1 and entry.framework == "sklearn"
    assert entry.load_model().predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
    run_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("MLflow run:"))
    job_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("Prefect:")).rsplit("/")[-1]

    for version, path in (
        (2, f"{job_id}/outputs/model"),  # the id `job run` printed
        (3, f"azureml://jobs/{run_id}/outputs/artifacts/paths/outputs/model/"),  # as Azure writes it
        (4, f"runs:/{run_id}/outputs/model"),
    ):
        made = _cli("model", "create", "--name", unique_name, "--path", path)
        assert made.returncode == 0, made.stderr[-3000:]
        assert f"Registered {unique_name} version {version} (sklearn)" in made.stdout
    assert RegisteredModel.version_of(unique_name).version == 4

    missing = _cli("model", "create", "--name", unique_name, "--path", f"{job_id}/outputs/nothing-here")
    assert missing.returncode == 2 and "has no artifact 'outputs/nothing-here'" in missing.stderr, missing.stderr
    assert "outputs/model" in missing.stderr  # what is there instead
    bad = _cli("model", "create", "--name", unique_name, "--path", "just-a-word")
    assert bad.returncode == 2 and "`--path`='just-a-word' names no job output" in bad.stderr, bad.stderr
    assert RegisteredModel.version_of(unique_name).version == 4  # nothing registered by the failures


def test_model_outputs_are_checked_when_the_file_loads(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "job.yml").write_text(
        "command: python t.py\ncode: src\noutputs:\n  a: {type: mlflow_model, name: Bad_Name}\n"
    )
    with pytest.raises(ConfigurationError, match=r"`outputs.a.name`: `model_name`='Bad_Name' must be lowercase"):
        load_job_file(tmp_path / "job.yml")
    (tmp_path / "job.yml").write_text(
        "command: python t.py\ncode: src\noutputs:\n  a: {type: mlflow_model}\n  b: {type: custom_model}\n"
    )
    with pytest.raises(ConfigurationError, match=r"2 model outputs \(a, b\); a job registers one"):
        load_job_file(tmp_path / "job.yml")
