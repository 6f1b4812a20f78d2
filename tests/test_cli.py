"""The README's main job: `prefect-mltrain demo`, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import wait_for_http

from prefect_mltrain.system.net import free_port


def test_demo_trains_registers_and_says_where_to_look(unique_name):
    exe = Path(sys.executable).with_name("prefect-mltrain")
    out = subprocess.run(
        [str(exe), "demo", "--model-name", unique_name], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Registered model: block '{unique_name}-v1' (alias '{unique_name}')" in out.stdout
    assert "Prefect UI:  http://127.0.0.1:" in out.stdout and "/runs/flow-run/" in out.stdout
    from prefect_mltrain.blocks import RegisteredModel

    assert RegisteredModel.load(unique_name).metrics["accuracy"] > 0.9
    # The printed MLflow link opens: the demo left the home's MLflow server coming up on its port.
    link = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("MLflow UI:"))
    base, run_id = link.split("/#/")[0], link.rsplit("/", 1)[-1]
    assert base == f"http://127.0.0.1:{os.environ['PREFECT_MLTRAIN_MLFLOW_PORT']}"
    assert wait_for_http(f"{base}/health") == "OK"
    assert "<html" in httpx.get(base, timeout=10).text.lower()
    run = httpx.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10).json()["run"]
    assert run["data"]["tags"]  # the very run the demo logged, read through the server
    assert {m["key"] for m in run["data"]["metrics"]} >= {"accuracy"}


def test_cli_reports_user_errors_in_one_line(unique_name):
    exe = Path(sys.executable).with_name("prefect-mltrain")
    out = subprocess.run(
        [str(exe), "demo", "--model-name", "Bad Name"], capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert out.returncode != 0
    assert "must be lowercase letters and digits" in out.stderr


def test_demo_with_its_chosen_mlflow_port_taken_stops_before_anything_runs(unique_name, tmp_path):
    import socket

    exe = Path(sys.executable).with_name("prefect-mltrain")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = os.environ | {"PREFECT_MLTRAIN_MLFLOW_PORT": str(port)}
        env["PREFECT_MLTRAIN_HOME"] = str(tmp_path / "home")  # no MLflow server recorded there yet
        out = subprocess.run(
            [str(exe), "demo", "--model-name", unique_name], capture_output=True, text=True, env=env, timeout=300
        )
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.startswith(f"error: Port {port} on 127.0.0.1 is taken") and "Traceback" not in out.stderr
    assert "PREFECT_MLTRAIN_MLFLOW_PORT" in out.stderr
    assert not (tmp_path / "home" / "prefect-server.json").exists()  # nothing was started, nothing trained


def test_the_default_mlflow_port_taken_moves_the_server_to_a_free_one(tmp_path):
    import socket

    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_MLTRAIN_MLFLOW_PORT", "PREFECT_API_URL")}
    env["PREFECT_MLTRAIN_HOME"] = str(tmp_path / "home")
    env["PREFECT_MLTRAIN_SERVER_PORT"] = str(free_port())
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 5000))
            busy.listen()
        except OSError:
            pass  # something holds 5000 already: the same case
        out = subprocess.run([exe, "server", "start"], capture_output=True, text=True, env=env, timeout=300)
        try:
            assert out.returncode == 0, out.stderr[-3000:]
            assert "Port 5000 is taken by something else" in out.stderr
            url = next(line.split()[2] for line in out.stdout.splitlines() if line.startswith("MLflow server:"))
            assert not url.endswith(":5000") and httpx.get(f"{url}/health", timeout=10).status_code == 200
        finally:
            subprocess.run([exe, "server", "stop"], env=env, timeout=120)


def _new_user_env(tmp_path: Path) -> dict[str, str]:
    """A shell with no Prefect API and a project home where nothing has run yet."""
    from prefect_mltrain.system.net import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "PREFECT_UI_"))}
    env.update(
        PREFECT_MLTRAIN_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # where Prefect's own temporary server would go
        PREFECT_MLTRAIN_SERVER_PORT=str(free_port()),
        PREFECT_MLTRAIN_MLFLOW_PORT=str(free_port()),
    )
    return env


def test_job_run_reports_every_problem_of_a_file_before_anything_starts(tmp_path):
    """Azure's iris sweep broken five ways: every problem once, with its line and fix; no server, no run."""
    from tests.test_check_job_file import BROKEN_SWEEP, _files

    _files(tmp_path, BROKEN_SWEEP)
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    env = _new_user_env(tmp_path)
    out = subprocess.run(
        [exe, "job", "run", "sweep.yml"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    for start in (
        "error: sweep.yml:12: `trial.environment.conda_file`: Python 3.4 is asked for",
        "error: sweep.yml:14: `inputs.iris_csv`: `path: data/iris.csv` does not exist",
        "error: sweep.yml:15: `compute`: `compute`='cpu-cluster' names no saved DaskCompute block: none is saved yet",
        "error: sweep.yml:18: `search_space.C`: uniform: `min_value` < `max_value` must hold",
        "error: sweep.yml:19: `search_space.kernel`: unknown distribution type 'choise'",
        "error: sweep.yml:20: `objective`: `goal` must be one of ['maximize', 'minimize'], but got goal='minimise'.",
        "error: sweep.yml:21: `early_termination`: `early_termination`: unknown policy type 'bandid'.",
        "error: sweep.yml:22: `limits.max_total_trials`: `max_total_trials` must be an integer >= 1",
        "error: sweep.yml:22: `limits.timeout`: `timeout` must be a positive number of seconds",
    ):
        assert sum(line.startswith(start) for line in errors) == 1, (start, out.stderr)
    assert len(errors) == 9 and "9 problems in sweep.yml; no job was started." in out.stderr
    assert "Traceback" not in out.stderr + out.stdout and out.stdout == ""
    # Nothing started: no Prefect server (neither ours nor Prefect's temporary one), so no flow run.
    home = tmp_path / "home"
    assert not (home / "prefect-server.json").exists() and not (home / "prefect").exists()
    assert not (home / "mlflow-server.json").exists()  # nor the MLflow server that starts beside it
    assert [p for p in (tmp_path / "prefect-home").rglob("*") if p.is_file()] == []  # no database of Prefect's
    assert not (home / "envs").exists() and not (home / "runs").exists()  # no environment built, no job folder

    debug = subprocess.run(
        [exe, "job", "run", "sweep.yml", "--debug"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert [line for line in debug.stderr.splitlines() if line.startswith("error: ")] == errors
    assert not (home / "prefect-server.json").exists()


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["--debug", "job", "run", "j.yml"], ["job", "run", "j.yml", "--debug"]])
def test_debug_is_a_global_flag_and_a_job_run_flag(argv):
    from prefect_mltrain.cli import build_parser

    assert build_parser().parse_args(argv).debug is True
    assert build_parser().parse_args(["job", "run", "j.yml"]).debug is False


@pytest.mark.unit
def test_console_log_without_tracebacks_keeps_the_record_whole(tmp_path, monkeypatch):
    import logging

    from prefect_mltrain.cli.logs import WithoutTraceback, console_without_tracebacks

    monkeypatch.delenv("PREFECT_LOGGING_SETTINGS_PATH", raising=False)
    monkeypatch.setenv("PREFECT_MLTRAIN_HOME", str(tmp_path))
    console_without_tracebacks()
    config = Path(os.environ["PREFECT_LOGGING_SETTINGS_PATH"])
    assert "(): prefect_mltrain.cli.logs.prefect_formatter_without_traceback" in config.read_text()
    monkeypatch.setenv("PREFECT_LOGGING_SETTINGS_PATH", "/the/users/own.yml")
    console_without_tracebacks()
    assert os.environ["PREFECT_LOGGING_SETTINGS_PATH"] == "/the/users/own.yml"  # kept

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", ("boom",), sys.exc_info())
    assert WithoutTraceback(logging.Formatter("%(message)s")).format(record) == "failed: boom"
    assert record.exc_info is not None  # the API log handler still gets the traceback
