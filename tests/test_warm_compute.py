"""The warm local compute: `server start` starts it, flows share it, `server stop` stops it.

Real processes throughout: the CLI, flows in processes of their own, a `dask scheduler` and
`dask worker` processes. The project home is this test's own (its own MLflow server), on the
session's Prefect server, so stopping it stops nothing another test uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from prefect_mltrain.system.net import free_port

TRIAL_MODULE = """
import os


def trial(params):
    # A relative path: the warm workers work in the flow's directory, as a LocalCluster's do.
    with open("pids.txt", "a") as out:
        out.write(f"{os.getpid()}\\n")
    return {"score": params["x"]}
"""

FLOW_SCRIPT = """
import logging
import sys

logging.basicConfig(level=logging.WARNING, stream=sys.stdout)

from trialmod import trial  # a module of the flow's folder, not installed: the workers import it

from prefect_mltrain.flows import sweep
from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform

result = sweep(
    trial=FunctionTrial(trial),
    search_space={"x": uniform(0, 1)},
    objective=Objective("score", "maximize"),
    limits=Limits(max_total_trials=2, max_concurrent_trials=2),
    name=sys.argv[1],
)
print("COMPLETE", sum(1 for t in result.trials if t["state"] == "COMPLETE"))
"""


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_mltrain.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _flow(env: dict[str, str], folder: Path, name: str) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "flow.py", name], cwd=folder, env=env, capture_output=True, text=True, timeout=420
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{exc.stdout!r}\n{exc.stderr!r}\n{_dask_logs(env)}") from None
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "COMPLETE 2" in done.stdout, out + _dask_logs(env)
    return out


def _dask_logs(env: dict[str, str]) -> str:
    logs = Path(env["PREFECT_MLTRAIN_HOME"]) / "dask"
    return "".join(f"\n--- {p}:\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))


def _group(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _members(*groups: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _group(int(p)) in groups]


def _trial_pids(folder: Path) -> set[int]:
    pids = {int(line) for line in (folder / "pids.txt").read_text().split()}
    (folder / "pids.txt").unlink()
    return pids


def test_server_start_shares_one_warm_cluster_between_flows_and_stop_ends_it(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "project"
    folder.mkdir()
    (folder / "trialmod.py").write_text(TRIAL_MODULE)
    (folder / "flow.py").write_text(textwrap.dedent(FLOW_SCRIPT))
    env = dict(
        os.environ,
        PREFECT_MLTRAIN_HOME=str(home),
        PREFECT_MLTRAIN_MLFLOW_PORT=str(free_port()),
        PREFECT_MLTRAIN_WARM_WORKERS="2",
    )
    env["PREFECT_MLTRAIN_WARM_COMPUTE"] = "true"  # opt-in
    started = _cli(env, "server", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Dask compute:   running at tcp://127.0.0.1:" in started.stdout, started.stdout
    state = fresh = json.loads((home / "warm-compute.json").read_text())
    try:
        # Two flows, each in a process of its own: their trials run on the same worker processes.
        _flow(env, folder, "warm-a")
        first = _trial_pids(folder)
        _flow(env, folder, "warm-b")
        second = _trial_pids(folder)
        assert {_group(p) for p in first | second} <= {state["workers_pid"]}, (first, second, state)
        assert first | second <= set(_members(state["workers_pid"])), "trials ran outside the warm workers"
        assert json.loads((home / "warm-compute.json").read_text())["address"] == state["address"]
        status = _cli(env, "server", "status")
        assert f"Dask compute:   running at {state['address']}" in status.stdout, status.stdout

        # A killed scheduler: the next flow starts a fresh cluster, says so, and ends the old workers.
        os.kill(state["scheduler_pid"], signal.SIGKILL)
        out = _flow(env, folder, "warm-c")
        assert "is gone (scheduler pid" in out and "starting a fresh one" in out, out
        fresh = json.loads((home / "warm-compute.json").read_text())
        assert fresh["address"] != state["address"]
        assert {_group(p) for p in _trial_pids(folder)} == {fresh["workers_pid"]}
        assert not _members(state["scheduler_pid"], state["workers_pid"]), "the old cluster's processes are left"
    finally:
        stopped = _cli(env, "server", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not (home / "warm-compute.json").exists()
    deadline = time.monotonic() + 15
    while _members(fresh["scheduler_pid"], fresh["workers_pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _members(fresh["scheduler_pid"], fresh["workers_pid"]), "processes of the warm cluster are left"
    assert "Dask compute:   not running" in _cli(env, "server", "status").stdout
