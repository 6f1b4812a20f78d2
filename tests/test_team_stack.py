"""The team topology of the README, started for real by deployments/team/start-team-stack.sh.

A Prefect server and an MLflow server, both on PostgreSQL, a Dask scheduler and two `dask worker`
processes; a user's script then runs a `train_job` on that scheduler, tracked in that MLflow,
and everything is stopped (and its databases dropped). Needs a PostgreSQL server whose role may
create databases (`bash .ci/postgres-setup.sh` makes one; `TEAM_PG_URL` names another).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TEAM = ROOT / "deployments" / "team"
PG_URL = os.environ.get("TEAM_PG_URL", "postgresql://mltrain:mltrain@127.0.0.1:5432")

TRAIN = textwrap.dedent("""
    import os
    import mlflow

    mlflow.log_param("worker", os.environ.get("TEAM_WORKER", "not a team worker"))
    mlflow.log_metric("accuracy", 0.93)
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/model.txt", "w") as f:
        f.write("weights")
""")

# A team member's script, as the README has it: PREFECT_API_URL names the team's Prefect server,
# two saved blocks name its Dask scheduler and its MLflow server.
USER_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from prefect_mltrain.blocks import DaskCompute, MlflowTracking
    from prefect_mltrain.flows import train_job

    if __name__ == "__main__":
        DaskCompute(address=os.environ["TEAM_DASK_ADDRESS"]).save("cluster")
        MlflowTracking(tracking_uri=os.environ["TEAM_MLFLOW_URI"]).save("team")
        result = train_job(
            script="train.py",
            source_directory=sys.argv[1],
            compute="cluster",
            tracking="team",
            experiment_name="team-stack",
        )
        print("RESULT", json.dumps({"run": result.mlflow_run_id, "flow_run_url": result.flow_run_url}))
""")


async def _fetch(database: str, query: str) -> list:
    import asyncpg

    conn = await asyncpg.connect(f"{PG_URL}/{database}", timeout=5)
    try:
        return [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


def _postgres_missing() -> str | None:
    try:
        asyncio.run(_fetch("postgres", "SELECT 1"))
    except Exception as exc:  # any failure means: no server we may use
        return f"no PostgreSQL at {PG_URL} ({type(exc).__name__}: {exc}); start one with `bash .ci/postgres-setup.sh`"
    return None


def _team_env(state: Path) -> dict[str, str]:
    lines = (state / "team.env").read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))


def test_a_job_runs_on_the_team_stack(tmp_path):
    missing = _postgres_missing()
    if missing:
        pytest.skip(missing)
    state, home, source = tmp_path / "state", tmp_path / "home", tmp_path / "job"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    (tmp_path / "user_script.py").write_text(USER_SCRIPT)
    name = f"t_{uuid.uuid4().hex[:10]}"
    # Nothing of the caller's Prefect, MLflow or stack settings (CI's stage sets TEAM_STACK_SERVICES).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "TEAM_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PREFECT_MLTRAIN_HOME=str(home),  # the script's; each worker has one of its own
        TEAM_PG_URL=PG_URL,
        TEAM_STACK_NAME=name,
    )
    try:
        subprocess.run(["bash", str(TEAM / "start-team-stack.sh"), str(state)], env=env, check=True, timeout=420)
        team = _team_env(state)
        assert set(team) == {"PREFECT_API_URL", "TEAM_MLFLOW_URI", "TEAM_DASK_ADDRESS"}
        done = subprocess.run(
            [sys.executable, str(tmp_path / "user_script.py"), str(source)],
            env={**env, **team},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])

        # The flow run is on the team's Prefect server, and that server keeps it in PostgreSQL.
        flow_run_id = result["flow_run_url"].rsplit("/", 1)[-1]
        assert result["flow_run_url"].startswith(team["PREFECT_API_URL"].removesuffix("/api"))
        flow_run = httpx.get(f"{team['PREFECT_API_URL']}/flow_runs/{flow_run_id}", timeout=30).json()
        assert flow_run["state_type"] == "COMPLETED"
        rows = asyncio.run(_fetch(f"{name}_prefect", f"SELECT state_type FROM flow_run WHERE id = '{flow_run_id}'"))
        assert rows == [("COMPLETED",)]

        # The job ran on a team worker and logged through the team's MLflow server into PostgreSQL;
        # its outputs went through the server to the artifact root.
        from mlflow.tracking import MlflowClient

        run = MlflowClient(tracking_uri=team["TEAM_MLFLOW_URI"]).get_run(result["run"])
        assert run.data.metrics["accuracy"] == 0.93
        assert run.data.params["worker"].startswith("team-worker-")
        metrics = asyncio.run(_fetch(f"{name}_mlflow", f"SELECT key FROM metrics WHERE run_uuid = '{result['run']}'"))
        assert ("accuracy",) in metrics
        stored = list((state / "mlflow-artifacts").rglob("model.txt"))
        assert [p.read_text() for p in stored] == ["weights"], stored
    finally:
        subprocess.run(["bash", str(TEAM / "stop-team-stack.sh"), str(state), "--drop-databases"], env=env, timeout=120)
    assert not list((state / "pids").glob("*.pid"))
    databases = asyncio.run(_fetch("postgres", f"SELECT datname FROM pg_database WHERE datname LIKE '{name}%'"))
    assert databases == []
