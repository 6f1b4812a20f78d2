"""Azure ML job files run for real through `run_job_file` and the command line."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _docker import BASE_IMAGE, containers_named, requires_docker

from prefect_mltrain.blocks import MlflowTracking, TrainingEnvironment
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows import run_job_file
from tests.helpers import flow_run_logs

SCRIPT = """
import argparse, os, shutil
p = argparse.ArgumentParser()
p.add_argument("--data"); p.add_argument("--lr", type=float); p.add_argument("--out")
a = p.parse_args()
print("lr", a.lr, "data", a.data, "greeting", os.environ.get("GREETING"), flush=True)
shutil.copy(a.data, os.path.join(a.out, "copied.csv"))
import mlflow; mlflow.log_metric("lr_seen", a.lr)
"""


@pytest.fixture
def job_dir(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(SCRIPT)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "job.yml").write_text(
        textwrap.dedent("""
        type: command
        code: src
        command: python train.py --data ${{inputs.data}} --lr ${{inputs.lr}} --out ${{outputs.model}}
        inputs:
          data: {type: uri_file, path: data.csv, mode: download}
          lr: 0.01
        outputs:
          model: {type: uri_folder}
        environment_variables: {GREETING: hello}
        experiment_name: job-files
        display_name: from-yaml
    """)
    )
    return tmp_path


def test_job_file_runs_with_inputs_outputs_and_overrides(job_dir):
    result = run_job_file(str(job_dir / "job.yml"), ["inputs.lr=0.25"])
    run = MlflowTracking().client().get_run(result.mlflow_run_id)
    assert run.data.metrics["lr_seen"] == 0.25 and run.info.run_name == "from-yaml"
    assert (Path(result.outputs_dir) / "model" / "copied.csv").read_text() == "a,b\n1,2\n"
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "greeting hello")
    line = next(m for m in logs if m.startswith("lr 0.25"))
    assert "greeting hello" in line and str(job_dir / "data.csv") not in line  # download mode: a private copy


@pytest.mark.parametrize("exit_code", [0, 1])
def test_download_copies_are_removed_when_the_job_ends(tmp_path, exit_code):
    seen = tmp_path / "seen.txt"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "show.py").write_text(
        textwrap.dedent(f"""
        import sys
        with open({str(seen)!r}, "w") as f:
            f.write(sys.argv[1] + " " + open(sys.argv[1]).read())
        sys.exit(int(sys.argv[2]))
    """)
    )
    (tmp_path / "data.csv").write_text("rows")
    (tmp_path / "job.yml").write_text(
        textwrap.dedent("""
        type: command
        code: src
        command: python show.py ${{inputs.data}} ${{inputs.code}}
        inputs:
          data: {type: uri_file, path: data.csv, mode: download}
          code: 0
    """)
    )
    state = run_job_file(str(tmp_path / "job.yml"), [f"inputs.code={exit_code}"], return_state=True)
    assert state.is_completed() == (exit_code == 0)
    copy, content = seen.read_text().split()
    assert content == "rows" and copy != str(tmp_path / "data.csv")  # the job read a private copy
    assert not Path(copy).exists() and not Path(copy).parent.parent.exists()


def test_environment_block_and_unknown_compute(job_dir, unique_name):
    TrainingEnvironment(environment_variables={"GREETING": "from-block"}).save(unique_name)
    text = (
        job_dir / "job.yml"
    ).read_text() + f"environment: {{block: {unique_name}}}\ncompute: azureml:no-such-cluster\n"
    (job_dir / "job.yml").write_text(text)
    state = run_job_file(str(job_dir / "job.yml"), return_state=True)
    with pytest.raises(ConfigurationError, match=r"'no-such-cluster' names no saved DaskCompute block"):
        state.result()


def test_cli_job_run_streams_and_downloads(job_dir, tmp_path):
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    out = subprocess.run(
        [exe, "job", "run", str(job_dir / "job.yml"), "--set", "inputs.lr=0.5"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lr 0.5 data" in out.stdout + out.stderr  # the script's output, streamed to the terminal
    run_id = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("MLflow run:"))
    down = subprocess.run(
        [exe, "job", "download", run_id, "-o", str(tmp_path / "dl")],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr[-2000:]
    assert (tmp_path / "dl" / "outputs" / "model" / "copied.csv").exists()
    # By the id of the flow run that `job run` printed, as `az ml job download --name`.
    flow_run_url = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("Prefect:"))
    flow_run_id = flow_run_url.rsplit("/")[-1]
    down = subprocess.run(
        [exe, "job", "download", flow_run_id, "-o", str(tmp_path / "by-flow-run")],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr[-2000:]
    assert (tmp_path / "by-flow-run" / "outputs" / "model" / "copied.csv").exists()
    unknown = subprocess.run(
        [exe, "job", "download", "no-such-job", "-o", str(tmp_path / "unknown")],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr, unknown.stderr[-2000:]
    assert "error: No MLflow run and no job's Prefect flow run has the id 'no-such-job'" in unknown.stderr
    assert not (tmp_path / "unknown").exists()  # nothing half-made


def test_cli_rejects_bad_file_before_starting_anything(tmp_path):
    (tmp_path / "bad.yml").write_text("type: command\ncommand: [\n")
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    out = subprocess.run([exe, "job", "run", str(tmp_path / "bad.yml")], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 2 and "not valid YAML at line 3, column 1" in out.stderr


def _job_file_runs(prefect_client) -> set[str]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    runs = prefect_client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["run-job-file"])))
    return {str(run.id) for run in runs}


def test_cli_checks_saved_blocks_before_any_flow_run(job_dir, prefect_client):
    """With a server up, the compute block a file names is looked up before a flow run is made."""
    (job_dir / "job.yml").write_text((job_dir / "job.yml").read_text() + "compute: azureml:no-such-cluster\n")
    before = _job_file_runs(prefect_client)
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    out = subprocess.run(
        [exe, "job", "run", str(job_dir / "job.yml"), "--set", "resources.instance_count=0"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, out.stderr
    assert "`compute`: `compute`='no-such-cluster' names no saved DaskCompute block" in errors[0]
    assert "Fix: save one with `DaskCompute(...).save('no-such-cluster')`" in errors[0]
    assert "(--set resources.instance_count=0): `resources.instance_count`: `instance_count` must be" in errors[1]
    assert "Traceback" not in out.stderr + out.stdout
    assert _job_file_runs(prefect_client) == before  # no flow run was made


def test_cli_job_that_fails_says_so_in_one_line_with_its_id(tmp_path, prefect_client):
    (tmp_path / "src").mkdir()
    (tmp_path / "job.yml").write_text("command: python -c \"import sys; print('working'); sys.exit(3)\"\ncode: src\n")
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    out = subprocess.run(
        [exe, "job", "run", str(tmp_path / "job.yml")], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr + out.stdout  # Prefect's, once per nested flow run, before
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: The job's command exited with code 3. Last lines of stderr:"], out.stderr[-3000:]
    job_id = out.stderr.split("\nJob ", 1)[1].split()[0]
    assert f"Job {job_id} ended Failed. See: prefect-mltrain job show {job_id}" in out.stderr
    assert f"/runs/flow-run/{job_id}" in out.stderr
    assert prefect_client.read_flow_run(job_id).state.is_failed()
    debug = subprocess.run(
        [exe, "job", "run", str(tmp_path / "job.yml"), "--debug"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_distributed_job_file(tmp_path):
    from tests.test_distributed_job import RENDEZVOUS

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ddp.py").write_text(RENDEZVOUS)
    (tmp_path / "job.yml").write_text(
        textwrap.dedent("""
        type: command
        code: src
        command: python ddp.py
        distribution: {type: pytorch, process_count_per_instance: 2}
        resources: {instance_count: 1}
    """)
    )
    result = run_job_file(str(tmp_path / "job.yml"))
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "rendezvous complete")
    assert "rendezvous complete [1]" in logs and "rank=1 local_rank=1 node_rank=0 world=2" in logs


def test_sweep_job_file(tmp_path):
    """Azure ML's sweep job YAML, as written for `az ml job create`."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        textwrap.dedent("""
        import argparse, mlflow
        p = argparse.ArgumentParser(); p.add_argument("--lr", type=float); p.add_argument("--depth", type=int)
        a = p.parse_args()
        print("trial lr", a.lr, "depth", a.depth, flush=True)
        mlflow.log_metric("score", a.depth - abs(a.lr - 0.1))
    """)
    )
    (tmp_path / "sweep.yml").write_text(
        textwrap.dedent("""
        $schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
        type: sweep
        trial:
          code: src
          command: python train.py --lr ${{search_space.lr}} --depth ${{search_space.depth}}
        sampling_algorithm: random
        search_space:
          lr: {type: uniform, min_value: 0.01, max_value: 0.5}
          depth: {type: choice, values: [1, 3]}
        objective: {goal: maximize, primary_metric: score}
        limits: {max_total_trials: 3, max_concurrent_trials: 1, timeout: 600}
        experiment_name: sweep-job-files
        display_name: yaml-sweep
    """)
    )
    result = run_job_file(str(tmp_path / "sweep.yml"))
    assert result.name.startswith("yaml-sweep-") and len(result.trials) == 3  # a generated name, as az ml
    assert all(t["state"] == "COMPLETE" for t in result.trials)
    assert result.best_params["depth"] == max(t["depth"] for t in result.trials)
    runs = (
        MlflowTracking()
        .client()
        .search_runs([result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.mlflow_parent_run_id}'")
    )
    assert len(runs) == 3 and all("score" in r.data.metrics for r in runs)


@requires_docker
def test_sweep_job_file_trials_run_in_its_image_environment(tmp_path):
    """`trial.environment` with an image and a conda file: every trial runs in that image."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(
        textwrap.dedent("""
        import argparse, sys, mlflow
        p = argparse.ArgumentParser(); p.add_argument("--lr", type=float); a = p.parse_args()
        print("trial python", sys.executable, flush=True)
        for epoch in (1, 2):
            mlflow.log_metric("score", a.lr * epoch, step=epoch)
        open("outputs/model.txt", "w").write(str(a.lr))
    """)
    )
    version = importlib.metadata.version("mlflow")
    (tmp_path / "conda.yml").write_text(
        textwrap.dedent(f"""
        dependencies:
          - python=3.11
          - pip:
            - mlflow-skinny=={version}
            - sqlalchemy
            - alembic
    """)
    )
    (tmp_path / "sweep.yml").write_text(
        textwrap.dedent(f"""
        type: sweep
        trial:
          code: src
          command: python train.py --lr ${{{{search_space.lr}}}}
          environment: {{image: {BASE_IMAGE}, conda_file: conda.yml}}
        sampling_algorithm: grid
        search_space: {{lr: {{type: choice, values: [0.1, 0.3]}}}}
        objective: {{goal: maximize, primary_metric: score}}
        limits: {{max_total_trials: 2, max_concurrent_trials: 2}}
    """)
    )
    result = run_job_file(str(tmp_path / "sweep.yml"))
    assert [t["state"] for t in result.trials] == ["COMPLETE", "COMPLETE"]
    assert result.best_params == {"lr": 0.3} and result.best_value == pytest.approx(0.6)
    client = MlflowTracking().client()
    for row in result.trials:
        # Each trial ran in its own copy of the code: its outputs are its own artifacts.
        local = client.download_artifacts(
            row["mlflow_run_id"], "outputs/model.txt", str(tmp_path / row["mlflow_run_id"])
        )
        assert Path(local).read_text() == str(row["lr"])
        logs = flow_run_logs(row["flow_run_id"], expect="trial python")
        assert "trial python /opt/mltrain-env/bin/python" in logs
    assert containers_named("mltrain-job-") == []


def _small_sweep_file(tmp_path: Path, filename: str, extra: str = "") -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "train.py").write_text(
        "import argparse, mlflow\n"
        "p = argparse.ArgumentParser(); p.add_argument('--lr', type=float); a = p.parse_args()\n"
        "mlflow.log_metric('score', a.lr)\n"
    )
    path = tmp_path / filename
    path.write_text(
        textwrap.dedent("""
        type: sweep
        trial:
          code: src
          command: python train.py --lr ${{search_space.lr}}
        sampling_algorithm: grid
        search_space: {lr: {type: choice, values: [0.1, 0.2]}}
        objective: {goal: maximize, primary_metric: score}
        limits: {max_total_trials: 2, max_concurrent_trials: 2}
    """)
        + extra
    )
    return path


def test_a_sweep_job_file_run_twice_is_two_sweeps(tmp_path):
    """As `az ml job create`: every submission is a new job; the underscore in the file name is fine."""
    path = _small_sweep_file(tmp_path, "job_sweep.yml")
    first, second = run_job_file(str(path)), run_job_file(str(path))
    assert first.name != second.name and first.name.startswith("job-sweep-")
    assert first.mlflow_parent_run_id != second.mlflow_parent_run_id
    for result in (first, second):
        assert sorted(t["lr"] for t in result.trials) == [0.1, 0.2]
        assert all(t["state"] == "COMPLETE" for t in result.trials)


def test_an_explicit_name_is_used_once_and_resumed_only_when_asked(tmp_path, unique_name):
    path = _small_sweep_file(tmp_path, "named.yml", f"name: {unique_name}\n")
    with pytest.raises(ConfigurationError, match="no sweep named"):
        run_job_file(str(path), resume=True)
    first = run_job_file(str(path))
    assert first.name == unique_name
    with pytest.raises(ConfigurationError, match=f"A sweep named '{unique_name}' already exists.*--resume"):
        run_job_file(str(path))
    resumed = run_job_file(str(path), resume=True)
    assert resumed.mlflow_parent_run_id == first.mlflow_parent_run_id
    assert sorted(t["trial"] for t in resumed.trials) == sorted(t["trial"] for t in first.trials)  # none run twice
    assert resumed.stop_reason.startswith("nothing left to run")


def test_cli_sweep_whose_trials_all_fail_says_so_without_worker_tracebacks(tmp_path):
    """The trials run in Dask worker processes: their Prefect console log has no traceback either."""
    path = _small_sweep_file(tmp_path, "failing.yml")
    (tmp_path / "src" / "train.py").write_text("import sys\nprint('trial fails', flush=True)\nsys.exit(2)\n")
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    out = subprocess.run([exe, "job", "run", str(path)], capture_output=True, text=True, env=os.environ, timeout=300)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "trial fails" in out.stderr + out.stdout  # the trials did run, and their output is shown
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: no trial of sweep failing-"), out.stderr[-3000:]
    assert "completed (2 failed, 0 stopped early), so it has no best trial" in errors[0]
    assert "/runs/flow-run/" in errors[0]
