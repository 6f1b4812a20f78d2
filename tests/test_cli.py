"""The README's main job: `prefect-mltrain demo`, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
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
