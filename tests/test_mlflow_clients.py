"""Any MLflow client a job's environment carries logs to the project's MLflow server over HTTP.

Before the server, a job whose environment had `mlflow-skinny` died on `import mlflow` (it cannot
open a `sqlite:` store), and one pinning MLflow 2.x died on an alembic revision it did not know.
Each environment here is built by the product, as a user's would be.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prefect_mltrain.blocks import MlflowTracking, TrainingEnvironment
from prefect_mltrain.flows import train_job

SCRIPT = textwrap.dedent("""
    import pathlib, sys
    import mlflow
    print("mlflow", mlflow.__version__, flush=True)
    mlflow.log_param("client", mlflow.__version__)
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    pathlib.Path("report.txt").write_text("from " + mlflow.__version__)
    mlflow.log_artifact("report.txt", "reports")
    if "--autolog" in sys.argv:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        mlflow.autolog()
        X, y = load_iris(return_X_y=True)
        LogisticRegression(max_iter=200).fit(X, y)
    mlflow.log_metric("after", 1.0)  # after autolog's fit: still the job's run
""")

CLIENTS = {
    "skinny": (TrainingEnvironment(pip_requirements=["mlflow-skinny==3.17.2"]), "3.17.2", []),
    "mlflow-2.x-autolog": (
        TrainingEnvironment(pip_requirements=["mlflow==2.22.2", "scikit-learn<1.7"]),
        "2.22.2",
        ["--autolog"],
    ),
    "the-products-own": (TrainingEnvironment(), None, []),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_job_logs_metrics_and_artifacts_with_the_mlflow_its_environment_carries(client, tmp_path):
    environment, version, arguments = CLIENTS[client]
    (tmp_path / "train.py").write_text(SCRIPT)
    result = train_job(script="train.py", arguments=arguments, source_directory=str(tmp_path), environment=environment)
    mlflow = MlflowTracking().client()
    run = mlflow.get_run(result.mlflow_run_id)
    if version:
        assert run.data.params["client"] == version
    assert [m.value for m in mlflow.get_metric_history(result.mlflow_run_id, "loss")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert result.metrics["after"] == 1.0 and run.info.status == "FINISHED"
    report = Path(mlflow.download_artifacts(result.mlflow_run_id, "reports/report.txt", str(tmp_path / "back")))
    assert report.read_text() == f"from {run.data.params['client']}"
    if "--autolog" in arguments:  # autolog of MLflow 2.x wrote into the job's run, not an orphan one
        assert run.data.params["max_iter"] == "200" and "training_accuracy_score" in run.data.metrics
        orphans = mlflow.search_runs([result.experiment_id], f"attributes.run_id != '{result.mlflow_run_id}'")
        assert not [
            r for r in orphans if r.data.tags.get("prefect.flow_run_id") is None and "max_iter" in r.data.params
        ]
