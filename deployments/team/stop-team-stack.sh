#!/usr/bin/env bash
# Stop what deployments/team/start-team-stack.sh STATE_DIR started: every service's whole
# process group (SIGTERM, then SIGKILL after 15 s). With --drop-databases, also drop the
# PostgreSQL databases it made (their names are in STATE_DIR/databases).
#
#   deployments/team/stop-team-stack.sh STATE_DIR [--drop-databases]
set -euo pipefail

state="${1:?usage: stop-team-stack.sh STATE_DIR [--drop-databases]}"
drop="${2:-}"
log() { echo "[team-stack] $*" >&2; }

if [ ! -d "$state/pids" ]; then
    log "nothing to stop: $state/pids does not exist (was the stack started with this STATE_DIR?)"
    exit 0
fi
# Workers first, so they do not log a lost scheduler; the servers last.
for label in dask-worker-{1..64} dask-scheduler mlflow prefect; do
    pid_file="$state/pids/$label.pid"
    [ -f "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    # Each service leads its own process group (setsid): end the children with it.
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pid_file"
    log "stopped $label (pid $pid)"
done

if [ "$drop" = "--drop-databases" ] && [ -s "$state/databases" ]; then
    python - "$(cat "$state/pg_url")" $(cat "$state/databases") <<'EOF'
import asyncio, sys
import asyncpg

async def main(url: str, names: list[str]) -> None:
    conn = await asyncpg.connect(f"{url}/postgres")
    try:
        for db in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
EOF
    log "dropped databases: $(tr '\n' ' ' <"$state/databases")"
    : >"$state/databases"
fi
