#!/usr/bin/env bash
# Start a team's stack on this machine, from the same commands the README's "Pointing it at
# bigger infrastructure" gives for separate hosts:
#   - a Prefect server on PostgreSQL (database ${TEAM_STACK_NAME}_prefect),
#   - an MLflow tracking server on PostgreSQL (database ${TEAM_STACK_NAME}_mlflow) that serves
#     the artifacts under STATE_DIR/mlflow-artifacts,
#   - a Dask scheduler and TEAM_DASK_WORKERS `dask worker` processes connected to it.
# Every service binds 127.0.0.1 on a free port, runs in its own session (pid and log under
# STATE_DIR) and is healthy when this script returns. It writes STATE_DIR/team.env, to `source`:
#   PREFECT_API_URL, TEAM_MLFLOW_URI, TEAM_DASK_ADDRESS.
# Stop it all with deployments/team/stop-team-stack.sh STATE_DIR [--drop-databases].
#
#   deployments/team/start-team-stack.sh STATE_DIR
#
# Environment (all optional):
#   TEAM_PG_URL          postgresql://USER:PASSWORD@HOST:PORT of a server where USER may create
#                        databases (default: the role .ci/postgres-setup.sh makes,
#                        postgresql://mltrain:mltrain@127.0.0.1:5432)
#   TEAM_STACK_NAME      prefix of the two databases, letters, digits and _ (default: team)
#   TEAM_STACK_SERVICES  which services to start, of "prefect mlflow dask" (default: all three)
#   TEAM_DASK_WORKERS    how many Dask workers (default: 2)
# The `prefect`, `mlflow`, `dask` and `python` commands are taken from PATH: activate the
# environment where prefect-mltrain[team] is installed first. Workers inherit this shell's
# environment, with PREFECT_API_URL of the Prefect server and a PREFECT_MLTRAIN_HOME of their own.
set -euo pipefail

state="${1:?usage: start-team-stack.sh STATE_DIR (a folder for pids, logs, artifacts and team.env)}"
pg_url="${TEAM_PG_URL:-postgresql://mltrain:mltrain@127.0.0.1:5432}"
name="${TEAM_STACK_NAME:-team}"
services="${TEAM_STACK_SERVICES:-prefect mlflow dask}"
n_workers="${TEAM_DASK_WORKERS:-2}"
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "[team-stack] $*" >&2; }
fail() {
    log "$*"
    bash "$here/stop-team-stack.sh" "$state" >&2 || true
    exit 1
}

for cmd in python prefect mlflow dask; do
    command -v "$cmd" >/dev/null 2>&1 || {
        log "\`$cmd\` is not on PATH. Fix: activate the environment of prefect-mltrain first" \
            "(e.g. \`source .venv/bin/activate\`; pip install 'prefect-mltrain[team]')."
        exit 1
    }
done
if [[ ! "$name" =~ ^[a-z_][a-z0-9_]*$ ]]; then
    log "TEAM_STACK_NAME must be lowercase letters, digits and _ (a database name prefix), but got '$name'."
    exit 1
fi
if [[ ! "$pg_url" =~ ^postgresql://[^/]+$ ]]; then
    log "TEAM_PG_URL must look like postgresql://USER:PASSWORD@HOST:PORT (no database), but got '$pg_url'."
    exit 1
fi
for service in $services; do
    if [[ ! "$service" =~ ^(prefect|mlflow|dask)$ ]]; then
        log "TEAM_STACK_SERVICES may name prefect, mlflow and dask, but got '$service' in '$services'."
        exit 1
    fi
done
for pid_file in "$state"/pids/*.pid; do
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        log "a stack started from $state still runs ($(basename "$pid_file" .pid), pid $(cat "$pid_file"))." \
            "Fix: stop it first with $here/stop-team-stack.sh $state, or give another STATE_DIR."
        exit 1
    fi
done
mkdir -p "$state/pids" "$state/logs"
state="$(cd "$state" && pwd)"
echo "$pg_url" >"$state/pg_url"
: >"$state/databases"
: >"$state/team.env"

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Run "$@" in its own session with its log and pid file under STATE_DIR (so stop can end its
# whole process group).
spawn() {
    local label="$1"
    shift
    setsid "$@" >"$state/logs/$label.log" 2>&1 </dev/null &
    echo $! >"$state/pids/$label.pid"
}

# Wait until `GET URL` answers 200; name the log to read when it does not.
answers() { python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
wait_http() {
    local label="$1" url="$2" seconds="$3"
    for _ in $(seq 1 "$seconds"); do
        answers "$url" && return 0
        kill -0 "$(cat "$state/pids/$label.pid")" 2>/dev/null || break
        sleep 1
    done
    fail "$label did not answer $url within $seconds s; the end of $state/logs/$label.log:
$(tail -n 30 "$state/logs/$label.log")"
}

# Create database $1 unless it exists (asyncpg comes with Prefect; no psql needed here).
create_database() {
    python - "$pg_url" "$1" <<'EOF' || fail "could not create database $1 on $pg_url (see above)"
import asyncio, sys
import asyncpg

async def main(url: str, db: str) -> None:
    conn = await asyncpg.connect(f"{url}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
            await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
EOF
    echo "$1" >>"$state/databases"
}

export_line() { echo "export $1=$2" >>"$state/team.env"; }

# Everything starts at once (the two servers migrate their databases meanwhile, ~20 s each);
# then each is waited for.
api_env=()
if [[ " $services " == *" prefect "* ]]; then
    port="${TEAM_PREFECT_PORT:-$(free_port)}"
    api="http://127.0.0.1:$port/api"
    create_database "${name}_prefect"
    log "Prefect server on PostgreSQL database ${name}_prefect: $api"
    # The server's own PREFECT_HOME keeps a user's profile out; the connection URL takes the
    # async driver. PREFECT_SERVER_* variables of this shell (e.g. the scheduler's loop) pass on.
    spawn prefect env -u PREFECT_API_URL -u PREFECT_SERVER_DATABASE_CONNECTION_URL \
        PREFECT_HOME="$state/prefect-home" \
        PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://${pg_url#postgresql://}/${name}_prefect" \
        PREFECT_SERVER_UI_API_URL="$api" \
        PREFECT_SERVER_ANALYTICS_ENABLED=false \
        prefect server start --host 127.0.0.1 --port "$port"
    export_line PREFECT_API_URL "$api"
    # Flows and tasks on the Dask workers report to it.
    api_env=("PREFECT_API_URL=$api")
fi

if [[ " $services " == *" mlflow "* ]]; then
    mlflow_url="http://127.0.0.1:${TEAM_MLFLOW_PORT:-$(free_port)}"
    create_database "${name}_mlflow"
    log "MLflow server on PostgreSQL database ${name}_mlflow: $mlflow_url"
    mkdir -p "$state/mlflow-artifacts"
    # Job execution (MLflow's GenAI jobs: seven huey consumers, ~240 MB each) is not needed
    # to track training runs.
    spawn mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server \
        --backend-store-uri "$pg_url/${name}_mlflow" \
        --serve-artifacts --artifacts-destination "$state/mlflow-artifacts" \
        --host 127.0.0.1 --port "${mlflow_url##*:}" --workers 2
    export_line TEAM_MLFLOW_URI "$mlflow_url"
fi

if [[ " $services " == *" dask "* ]]; then
    address="tcp://127.0.0.1:${TEAM_DASK_PORT:-$(free_port)}"
    log "Dask scheduler $address with $n_workers workers"
    spawn dask-scheduler dask scheduler --host 127.0.0.1 --port "${address##*:}" --no-dashboard
    # Each worker has a project home of its own, as on a host of its own: it shares no files
    # with the flows. TEAM_WORKER lets a job tell which worker ran it.
    for i in $(seq 1 "$n_workers"); do
        spawn "dask-worker-$i" env "${api_env[@]}" TEAM_WORKER="team-worker-$i" \
            PREFECT_MLTRAIN_HOME="$state/dask-worker-$i/home" \
            dask worker "$address" --name "team-worker-$i" --nworkers 1 --nthreads 1 --no-dashboard \
            --local-directory "$state/dask-worker-$i"
    done
    export_line TEAM_DASK_ADDRESS "$address"
fi

if [[ " $services " == *" prefect "* ]]; then wait_http prefect "$api/health" 180; fi
if [[ " $services " == *" mlflow "* ]]; then wait_http mlflow "$mlflow_url/health" 240; fi
if [[ " $services " == *" dask "* ]]; then
    python - "$address" "$n_workers" <<'EOF' || fail "the Dask scheduler $address did not get its workers; see $state/logs/dask-*.log"
import sys
from distributed import Client

with Client(sys.argv[1], timeout=60) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=120)
EOF
fi

log "up; source $state/team.env:"
cat "$state/team.env"
