"""train_job end to end: real Prefect server, Dask cluster, MLflow store and subprocesses."""

import textwrap
import time

import pytest

from prefect_mltrain.blocks import MlflowTracking, RegisteredModel, TrainingEnvironment
from prefect_mltrain.errors import ConfigurationError, ModelRegistrationError
from prefect_mltrain.flows import train_job
from tests.helpers import flow_run_logs, mlflow_runs_of

TRAIN = textwrap.dedent("""
    import argparse, os, sys
    import joblib, mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    print("hello from the job, C =", args.C, flush=True)
    print("sys.prefix", sys.prefix, flush=True)
    if args.fail:
        print("boom: training diverged", file=sys.stderr)
        sys.exit(3)
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=args.C, max_iter=300).fit(X, y)
    mlflow.log_param("C", args.C)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("accuracy", model.score(X, y))
    os.makedirs("outputs", exist_ok=True)
    joblib.dump(model, "outputs/model.joblib")
    with open("logs/extra.log", "w") as f:
        f.write("custom log")
""")


@pytest.fixture
def source(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ignored.bin").write_bytes(b"0" * 100)
    (tmp_path / ".amlignore").write_text("data/\n")
    return tmp_path


def test_job_is_tracked_logged_and_registered(source, compute, unique_name):
    result = train_job(
        script="train.py",
        arguments=["--C", 0.5],
        source_directory=str(source),
        compute=compute,
        model_path="outputs/model.joblib",
        model_name=unique_name,
        tags={"team": "vision"},
    )
    flow_run_id = result.flow_run_url.rsplit("/", 1)[-1]
    # Output streamed into the flow run's logs in the Prefect API.
    assert any("hello from the job, C = 0.5" in m for m in flow_run_logs(flow_run_id, "hello from the job"))
    # Plain mlflow.log_* calls of the script landed in the job's run, which links back to Prefect.
    client = MlflowTracking().client()
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.5" and run.data.metrics["accuracy"] > 0.9
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1.0 / 3]
    assert run.data.tags["prefect.flow_run_id"] == flow_run_id and run.data.tags["team"] == "vision"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"outputs", "logs", "user_logs"} <= artifacts
    assert "snapshot/data" not in str(result.run_dir) and not (source / "outputs").exists()
    # The registered version loads and predicts; the alias points at it.
    entry = RegisteredModel.load(unique_name)
    assert (entry.version, entry.framework, result.model_block) == (1, "joblib", f"{unique_name}-v1")
    assert entry.mlflow_run_id == run.info.run_id and entry.flow_run_id == flow_run_id
    assert entry.data_fingerprint == run.data.tags["mltrain.source_fingerprint"]
    assert list(entry.load_model().predict([[5.1, 3.5, 1.4, 0.2]])) == [0]


def test_failing_script_fails_flow_and_mlflow_run(source, compute):
    state = train_job(
        script="train.py", arguments=["--fail"], source_directory=str(source), compute=compute, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(Exception, match=r"exited with code 3\. Last lines of stderr:\nboom: training diverged"):
        state.result()
    runs = mlflow_runs_of(str(state.state_details.flow_run_id))
    assert [r.info.status for r in runs] == ["FAILED"]


def test_pip_environment_runs_the_job_in_its_virtualenv(tmp_path, compute, project_home):
    (tmp_path / "show.py").write_text("import sys, six; print('prefix', sys.prefix, 'six', six.__version__)")
    env = TrainingEnvironment(pip_requirements=["six==1.16.0"], environment_variables={"GREETING": "hi"})
    result = train_job(
        command="python show.py && echo greeting=$GREETING",
        source_directory=str(tmp_path),
        environment=env,
        compute=compute,
    )
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "greeting=hi")
    line = next(m for m in logs if m.startswith("prefix"))
    assert str(project_home / "envs" / env.content_hash()[:16]) in line and line.endswith("six 1.16.0")
    assert "greeting=hi" in logs


def test_timeout_kills_the_job(tmp_path, compute):
    (tmp_path / "sleep.py").write_text("import time; print('start', flush=True); time.sleep(60)")
    state = train_job(
        script="sleep.py", source_directory=str(tmp_path), compute=compute, timeout_seconds=2, return_state=True
    )
    with pytest.raises(Exception, match="ran past `timeout_seconds`=2"):
        state.result()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"script": "trian.py"}, r"`script`='trian.py' does not exist .*Python files there: \['train.py'\]"),
        ({"script": "../outside.py"}, r"lies outside `source_directory`"),
        ({}, r"Give exactly one of `script`"),
        ({"script": "train.py", "model_path": "outputs/m.pkl"}, r"`model_path` and `model_name` go together"),
        ({"script": "train.py", "model_path": "model.pkl", "model_name": "m"}, r"must lie under ./outputs"),
        ({"script": "train.py", "model_path": "outputs/m.pkl", "model_name": "My Model"}, r"Fix: use 'my-model'"),
        ({"script": "train.py", "compute": "no-such-compute"}, r"'no-such-compute' names no saved DaskCompute"),
        ({"script": "train.py", "environment": TrainingEnvironment(conda_file="dependencies: [")}, r"not valid YAML"),
    ],
)
def test_bad_input_fails_before_anything_runs(source, kwargs, message):
    (source.parent / "outside.py").write_text("")
    state = train_job(source_directory=str(source), return_state=True, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        state.result()
    assert mlflow_runs_of(str(state.state_details.flow_run_id)) == []


def test_model_path_the_job_did_not_produce(source, compute, unique_name):
    state = train_job(
        script="train.py",
        source_directory=str(source),
        compute=compute,
        model_path="outputs/missing.pkl",
        model_name=unique_name,
        return_state=True,
    )
    with pytest.raises(
        ModelRegistrationError, match=r"was not produced by the job \(it wrote: \['outputs/model.joblib'\]\)"
    ):
        state.result()
    assert MlflowTracking().client().search_registered_models(filter_string=f"name = '{unique_name}'") == []


def test_existing_version_is_never_overwritten(source, compute, unique_name):
    taken = RegisteredModel(
        model_name=unique_name,
        version=1,
        framework="joblib",
        model_uri="models:/x/1",
        source_uri="runs:/old/outputs/model.joblib",
        tracking_uri="sqlite:///old.db",
        description="the original",
    )
    taken.save(f"{unique_name}-v1")
    state = train_job(
        script="train.py",
        source_directory=str(source),
        compute=compute,
        model_path="outputs/model.joblib",
        model_name=unique_name,
        return_state=True,
    )
    with pytest.raises(ModelRegistrationError, match=f"'{unique_name}-v1' already exists.*nothing was overwritten"):
        state.result()
    assert RegisteredModel.load(f"{unique_name}-v1").description == "the original"
    assert MlflowTracking().client().search_model_versions(f"name = '{unique_name}'") == []
    runs = mlflow_runs_of(str(state.state_details.flow_run_id))
    assert [r.info.status for r in runs] == ["FAILED"]


def test_missing_python_in_environment_fails_clearly(source, compute):
    env = TrainingEnvironment(pip_requirements=["six"], python_version="3.4")
    state = train_job(
        script="train.py", source_directory=str(source), compute=compute, environment=env, return_state=True
    )
    with pytest.raises(Exception, match=r"Python 3\.4 is asked for"):
        state.result()


def test_autolog_and_later_metrics_share_the_job_run(tmp_path, compute):
    """autolog ends runs it resumed after fit(); the job's run must still get later metrics."""
    (tmp_path / "auto.py").write_text(
        textwrap.dedent("""
        import mlflow
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier
        mlflow.autolog(log_models=False)
        X, y = load_iris(return_X_y=True)
        DecisionTreeClassifier(max_depth=2).fit(X, y)
        mlflow.log_metric("after_fit", 1.0)
    """)
    )
    result = train_job(script="auto.py", source_directory=str(tmp_path), compute=compute)
    runs = mlflow_runs_of(result.flow_run_url.rsplit("/", 1)[-1])
    experiment_runs = (
        MlflowTracking().client().search_runs([result.experiment_id], filter_string="metrics.after_fit = 1")
    )
    assert [r.info.run_id for r in runs] == [result.mlflow_run_id]
    assert [r.info.run_id for r in experiment_runs if "prefect.flow_run_id" not in r.data.tags] == []
    assert {"after_fit", "training_accuracy_score"} <= set(result.metrics)
    assert runs[0].data.params["max_depth"] == "2"


def test_a_cached_environment_is_reused_without_a_build_task(tmp_path, prefect_client):
    """The default compute shares this machine's cache: a hit is read in the flow, not in a task run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    (tmp_path / "hello.py").write_text("print('hello', flush=True)")
    result = train_job(script="hello.py", source_directory=str(tmp_path))
    flow_run_id = result.flow_run_url.rsplit("/", 1)[-1]
    assert any(m.endswith("(user-managed) reused") for m in flow_run_logs(flow_run_id, "reused"))
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + 15
    while (
        not (names := [t.name for t in prefect_client.read_task_runs(flow_run_filter=flow_filter)])
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)  # task runs reach the API as events, a little later
    assert names and not any(n.startswith("build-environment") for n in names), names


@pytest.fixture
def slow_tracking_store(monkeypatch):
    """A store that takes 3 s to answer, as a cold `import mlflow` and SQLite store or a far server do."""
    ensure_experiment = MlflowTracking.ensure_experiment

    def slow(self, name=None):
        time.sleep(3)
        return ensure_experiment(self, name)

    monkeypatch.setattr(MlflowTracking, "ensure_experiment", slow)


def test_python_job_starts_before_its_run_exists_and_logs_into_it(tmp_path, slow_tracking_store):
    """The script's first line comes before the MLflow run exists; `import mlflow` then finds the run."""
    (tmp_path / "early.py").write_text(
        textwrap.dedent("""
        import os
        run_file = os.environ["MLTRAIN_RUN_ID_FILE"]
        print("at start: run id set", "MLFLOW_RUN_ID" in os.environ, "run file there", os.path.exists(run_file), flush=True)
        import mlflow
        mlflow.log_metric("early", 1.0)
        print("after import: run", os.environ["MLFLOW_RUN_ID"], "experiment", os.environ["MLFLOW_EXPERIMENT_ID"], flush=True)
    """)
    )
    result = train_job(script="early.py", source_directory=str(tmp_path), tags={"team": "speed"})
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "after import")
    assert "at start: run id set False run file there False" in logs
    assert f"after import: run {result.mlflow_run_id} experiment {result.experiment_id}" in logs
    run = MlflowTracking().client().get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"early": 1.0}
    assert run.data.tags["team"] == "speed" and run.data.tags["mltrain.environment_hash"]
    assert run.data.tags["prefect.flow_run_id"] == result.flow_run_url.rsplit("/", 1)[-1]
    assert [r.info.run_id for r in mlflow_runs_of(run.data.tags["prefect.flow_run_id"])] == [result.mlflow_run_id]


def test_shell_command_sees_mlflow_run_id_from_the_start(tmp_path):
    (tmp_path / "keep").write_text("")
    result = train_job(
        command="echo run=$MLFLOW_RUN_ID experiment=$MLFLOW_EXPERIMENT_ID", source_directory=str(tmp_path)
    )
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "run=")
    assert f"run={result.mlflow_run_id} experiment={result.experiment_id}" in logs


def test_a_run_that_cannot_be_created_stops_the_started_job(tmp_path, slow_tracking_store):
    (tmp_path / "slow.py").write_text("import time; print('started', flush=True); time.sleep(60)")
    started = time.monotonic()
    state = train_job(
        script="slow.py",
        source_directory=str(tmp_path),
        tracking=MlflowTracking(tracking_uri="nosuch://store"),
        return_state=True,
    )
    with pytest.raises(Exception, match="nosuch"):
        state.result()
    assert time.monotonic() - started < 30  # killed, not left to sleep
    logs = flow_run_logs(str(state.state_details.flow_run_id), "Stopped because")
    assert "started" in logs
    assert any("Stopped because its MLflow run could not be created" in m for m in logs)
