#!/usr/bin/env bash
# Make a PostgreSQL server available on 127.0.0.1 for the PostgreSQL stage of CI and for
# deployments/team/start-team-stack.sh. Idempotent and fast when everything is already there:
#   1. install Debian's `postgresql` with apt-get if `pg_ctlcluster` is missing;
#   2. create the cluster `main` of the newest installed major if it does not exist, start it
#      if it is down, and wait until it accepts connections;
#   3. create the login role MLTRAIN_PG_USER (password MLTRAIN_PG_PASSWORD, allowed to create
#      databases) if it is missing.
# It prints one line last: the server's URL without a database, e.g.
#   postgresql://mltrain:mltrain@127.0.0.1:5432
# Needs root (or sudo) for steps 1 and 2 and to act as the `postgres` superuser in step 3.
set -euo pipefail

PG_USER="${MLTRAIN_PG_USER:-mltrain}"
PG_PASSWORD="${MLTRAIN_PG_PASSWORD:-mltrain}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log() { echo "[postgres-setup] $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing postgresql"
    $SUDO apt-get update -qq
    # The postinst may try to start the cluster and be refused where no init system runs; the
    # cluster is started below either way.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

version="$(ls /usr/lib/postgresql | sort -n | tail -n 1)"
if [ -z "$version" ]; then
    log "no PostgreSQL server under /usr/lib/postgresql after installing; fix: apt-get install postgresql"
    exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating cluster $version/main"
    $SUDO pg_createcluster "$version" main >/dev/null
fi
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')"
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    log "starting cluster $version/main on port $port"
    $SUDO pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    log "PostgreSQL $version/main did not accept connections on 127.0.0.1:$port within 60 s; its log:"
    $SUDO tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 || true
    exit 1
fi

as_postgres() { $SUDO runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$port" "$@"; }
if [ "$(as_postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
    log "creating role $PG_USER"
    as_postgres -c "CREATE ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
log "PostgreSQL $version up on 127.0.0.1:$port, role $PG_USER"
echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$port"
