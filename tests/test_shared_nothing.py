"""Workers that share nothing with the flow: a `dask scheduler` and two `dask worker` processes, each
with its own project home and working folder, in a mount namespace where the flow's project home
and the job's source folder are hidden under an empty tmpfs. Code travels to them, environments
are built on them, outputs and logs come back through the MLflow server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from prefect_mltrain.blocks import DaskCompute, MlflowTracking, TrainingEnvironment
from prefect_mltrain.flows import sweep, train_job
from prefect_mltrain.sweep import CommandTrial, Limits, Objective, uniform
from prefect_mltrain.system.net import free_port
from tests.test_distributed_job import RENDEZVOUS

DASK = str(Path(sys.executable).with_name("dask"))

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="hiding the flow's files from the workers needs `unshare -m` as root (util-linux)",
)

JOB = textwrap.dedent("""
    import os, pathlib, sys
    pathlib.Path("outputs/result.txt").write_text("made on the worker\\n")
    print("home", os.environ.get("PREFECT_MLTRAIN_HOME"), "python", sys.executable, flush=True)
""")

TRIAL = textwrap.dedent("""
    import argparse, pathlib, mlflow
    parser = argparse.ArgumentParser(); parser.add_argument("--x", type=float)
    x = parser.parse_args().x
    pathlib.Path("outputs/x.txt").write_text(str(x))
    for step in range(3):
        mlflow.log_metric("score", x * (step + 1), step=step)
""")


@pytest.fixture(scope="module")
def elsewhere(project_home):
    """A scheduler and two workers that cannot see the flow's project home or the jobs' sources."""
    base = Path(tempfile.mkdtemp(prefix="mltrain-elsewhere-"))
    sources = base / "sources"  # the jobs' source folders: on the flow's side only
    sources.mkdir()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL,
            stderr=open(base / "scheduler.log", "wb"),  # noqa: SIM115 - closed with the process
            start_new_session=True,
        )
    ]
    homes = []
    for i in range(2):
        folder = base / f"worker-{i}"
        (folder / "home").mkdir(parents=True)
        homes.append(folder / "home")
        hide = " && ".join(f"mount -t tmpfs none {p}" for p in (project_home, sources))
        env = {**os.environ, "PREFECT_MLTRAIN_HOME": str(folder / "home")}
        procs.append(
            subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    f"{hide} && exec {DASK} worker {address} --nworkers 1 --nthreads 2 --no-dashboard "
                    f"--local-directory {folder / 'dask'} --name worker-{i}",
                ],  # fmt: skip
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(folder / "worker.log", "wb"),  # noqa: SIM115
                start_new_session=True,
            )
        )
    import distributed

    with distributed.Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
        # The flow's home and the sources are empty folders on the workers: nothing there to read.
        seen = client.run(lambda: [sorted(os.listdir(p)) for p in (str(project_home), str(sources))])
    assert all(listing == [[], []] for listing in seen.values()), seen
    yield address, sources, homes
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def _artifacts(run_id: str, path: str = "") -> list[str]:
    client = MlflowTracking().client()
    found = []
    for item in client.list_artifacts(run_id, path or None):
        found += _artifacts(run_id, item.path) if item.is_dir else [item.path]
    return found


def test_a_command_job_runs_on_a_worker_that_sees_none_of_the_flows_files(elsewhere, project_home, tmp_path):
    address, sources, homes = elsewhere
    src = sources / "job"
    src.mkdir()
    (src / "train.py").write_text(JOB)
    result = train_job(
        script="train.py",
        source_directory=str(src),
        compute=DaskCompute(address=address),
        environment=TrainingEnvironment(pip_requirements=["six"]),  # built on the worker, in its home
    )
    ran_in = next(home for home in homes if result.run_dir.startswith(str(home)))
    artifacts = _artifacts(result.mlflow_run_id)
    fingerprint = next(a for a in artifacts if a.startswith("snapshot/")).split("/")[1].removesuffix(".tar.gz")
    assert {"outputs/result.txt", "user_logs/std_log.txt"} <= set(artifacts)
    client = MlflowTracking().client()
    assert Path(client.download_artifacts(result.mlflow_run_id, "outputs/result.txt", str(tmp_path))).read_text() == (
        "made on the worker\n"
    )
    log = Path(client.download_artifacts(result.mlflow_run_id, "user_logs/std_log.txt", str(tmp_path))).read_text()
    assert f"home {ran_in}" in log and f"python {ran_in / 'envs'}" in log  # the worker's home, its own build
    assert (ran_in / "snapshots" / f"{fingerprint}.tar.gz").is_file()  # downloaded once, kept by content
    assert not (project_home / "runs" / result.flow_run_url.rsplit("/", 1)[-1] / "snapshot").exists()
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mltrain.environment_hash"]


def test_a_command_trial_sweep_runs_on_workers_that_share_nothing(elsewhere, project_home, unique_name):
    address, sources, homes = elsewhere
    src = sources / "trial"
    src.mkdir()
    (src / "train.py").write_text(TRIAL)
    flow_side = project_home / "runs" / "trials"  # other tests' local sweeps leave theirs here
    before = set(flow_side.iterdir()) if flow_side.exists() else set()
    result = sweep(
        trial=CommandTrial(script="train.py", source_directory=str(src), arguments=["--x", "${{search_space.x}}"]),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score", goal="maximize"),
        limits=Limits(max_total_trials=4, max_concurrent_trials=2),
        name=unique_name,
        compute=DaskCompute(address=address),
    )
    assert [t["state"] for t in result.trials] == ["COMPLETE"] * 4
    client = MlflowTracking().client()
    children = client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{result.mlflow_parent_run_id}'", max_results=10
    )
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    for child in children:
        history = [m.value for m in client.get_metric_history(child.info.run_id, "score")]
        x = float(child.data.params["x"])
        assert history == pytest.approx([x, 2 * x, 3 * x])  # as the script logged it, point for point
        assert "outputs/x.txt" in _artifacts(child.info.run_id)
    assert (set(flow_side.iterdir()) if flow_side.exists() else set()) == before  # no trial ran on the flow's side
    assert sum(len(list((home / "runs" / "trials").glob("*"))) for home in homes if (home / "runs").exists()) == 4


def test_a_two_rank_pytorch_job_meets_across_workers_that_share_nothing(elsewhere):
    address, sources, homes = elsewhere
    src = sources / "ddp"
    src.mkdir()
    (src / "ddp.py").write_text(RENDEZVOUS)
    result = train_job(
        script="ddp.py",
        source_directory=str(src),
        compute=DaskCompute(address=address),
        instance_count=2,
        distribution={"type": "pytorch", "process_count_per_instance": 1},
    )
    logs = {a for a in _artifacts(result.mlflow_run_id) if a.startswith("user_logs/")}
    assert logs == {"user_logs/std_log_process_00.txt", "user_logs/std_log_process_01.txt"}
    client = MlflowTracking().client()
    with tempfile.TemporaryDirectory() as tmp:
        rank0 = Path(client.download_artifacts(result.mlflow_run_id, "user_logs/std_log_process_00.txt", tmp))
        assert "rendezvous complete [1]" in rank0.read_text()
    # One rank per worker: each worker unpacked the snapshot in its own home.
    assert all((home / "runs" / result.flow_run_url.rsplit("/", 1)[-1] / "snapshot").is_dir() for home in homes)


JOB_FILE = textwrap.dedent("""
    $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
    code: src
    command: python count.py --data ${{inputs.table}} --folder ${{inputs.folder}}
    inputs:
      table:
        type: uri_file
        path: data/table.csv
      folder:
        type: uri_folder
        path: data/more
    outputs:
      counts:
        type: uri_folder
    compute: azureml:COMPUTE
""")

COUNT = textwrap.dedent("""
    import argparse, pathlib
    parser = argparse.ArgumentParser(); parser.add_argument("--data"); parser.add_argument("--folder")
    args = parser.parse_args()
    rows = len(pathlib.Path(args.data).read_text().splitlines())
    files = sorted(p.name for p in pathlib.Path(args.folder).iterdir())
    pathlib.Path("outputs/counts/counts.txt").write_text(f"{rows} {files}")
""")


def test_a_job_files_local_inputs_travel_to_a_worker_that_sees_none_of_them(
    elsewhere, project_home, unique_name, tmp_path
):
    """Azure's `uri_file`/`uri_folder` inputs on the flow's disk reach a worker on another machine."""
    from prefect_mltrain.flows import run_job_file

    address, sources, homes = elsewhere
    job = sources / "inputs-job"
    (job / "src").mkdir(parents=True)
    (job / "src" / "count.py").write_text(COUNT)
    (job / "src" / ".gitignore").write_text("*.csv\n")  # the user's ignore file must not drop an input
    (job / "data" / "more").mkdir(parents=True)
    (job / "data" / "table.csv").write_text("a,b\n1,2\n3,4\n")
    (job / "data" / "more" / "x.txt").write_text("x")
    DaskCompute(address=address).save(unique_name)
    (job / "job.yml").write_text(JOB_FILE.replace("COMPUTE", unique_name))
    result = run_job_file(str(job / "job.yml"))
    client = MlflowTracking().client()
    counts = client.download_artifacts(result.mlflow_run_id, "outputs/counts/counts.txt", str(tmp_path))
    assert Path(counts).read_text() == "3 ['x.txt']"
    # The copy that travelled is gone from the flow's side once the job ended.
    assert not (project_home / "runs" / "inputs").exists() or not any((project_home / "runs" / "inputs").iterdir())
