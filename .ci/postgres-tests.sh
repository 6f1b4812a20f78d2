#!/usr/bin/env bash
# The PostgreSQL stage of CI: the deployment, schedule, sweep and job tests against a Prefect
# server whose database is PostgreSQL, and the team stack test (Prefect and MLflow servers on
# PostgreSQL, a Dask scheduler with workers; tests/test_team_stack.py).
#   1. .ci/postgres-setup.sh installs and starts PostgreSQL;
#   2. deployments/team/start-team-stack.sh starts only its Prefect server, on a fresh database;
#   3. pytest runs with PREFECT_API_URL set to it (tests/conftest.py then starts no server);
#   4. the stage checks that the flow runs are rows in PostgreSQL, stops the server and drops
#      the database.
# Run from the repository root after `pip install -e '.[dev]'` into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

export TEAM_PG_URL="$(bash .ci/postgres-setup.sh)"
export TEAM_STACK_NAME="ci_$(date +%s)_$$"
export TEAM_STACK_SERVICES=prefect
# Scheduled runs within seconds (tests/test_schedules.py), as tests/conftest.py gives its own server.
export PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=5
export PATH="$PWD/.venv/bin:$PATH"
state="$(mktemp -d -t mltrain-pg-ci-XXXX)"
trap 'bash deployments/team/stop-team-stack.sh "$state" --drop-databases; rm -rf "$state"' EXIT

bash deployments/team/start-team-stack.sh "$state"
echo "Prefect server on PostgreSQL up after $(($(date +%s) - started)) s"
(
    source "$state/team.env"
    # test_team_stack.py starts a whole team stack of its own, on databases of its own.
    python -m pytest -p no:cacheprovider --durations=5 tests/test_deployments.py tests/test_schedules.py \
        tests/test_sweep_flow.py tests/test_train_job.py tests/test_team_stack.py
)
# The runs above are rows of the PostgreSQL database, not of some other server's SQLite file.
python - "$TEAM_PG_URL/${TEAM_STACK_NAME}_prefect" <<'EOF'
import asyncio, sys
import asyncpg

async def main(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        runs = await conn.fetchval("SELECT count(*) FROM flow_run")
        deployments = await conn.fetchval("SELECT count(*) FROM deployment")
    finally:
        await conn.close()
    print(f"PostgreSQL holds {runs} flow runs and {deployments} deployments of the tests")
    if not runs or not deployments:
        sys.exit("the tests left no flow run or deployment in PostgreSQL: they did not use its server")

asyncio.run(main(sys.argv[1]))
EOF
echo "PostgreSQL stage: $(($(date +%s) - started)) s"
