"""Sweep per-trial overhead with the Prefect server on PostgreSQL against the same on SQLite.

Both servers run in this one run, side by side: the embedded SQLite server the product starts
(`prefect_mltrain.server.stack.start_server`) and `prefect server start` on a fresh PostgreSQL
database, started by `deployments/team/start-team-stack.sh` as a team would run it. The same
sweep of trivial `FunctionTrial` trials, 2 at a time on 2 local Dask workers, runs against each,
in alternating order; every measurement is a fresh process pointed at one server by
`PREFECT_API_URL` (as a user's script is). Per trial = (sweep of N+2 trials - sweep of 2) / N,
so the sweep's fixed cost and the process start drop out. Not a test: run it by hand.

    bash .ci/postgres-setup.sh   # a PostgreSQL server and the role `mltrain` (or set TEAM_PG_URL)
    python benchmarks/prefect_db_overhead.py [--trials 14] [--repeats 3]

Prints each arm's runs, their medians and the ratio PostgreSQL / SQLite (target: at most 1.2),
the median of each repeat's pair (the two runs next to each other in time), and the CPU the
server side spends per trial: the Prefect server's processes and, for PostgreSQL, the database
server's (its postmaster and every backend), when it runs on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEAM = ROOT / "deployments" / "team"


def _tree_cpu(root_pids: list[int]) -> float:
    """CPU seconds used so far by each root process and all its descendants, the exited ones included.

    A process's `children_*` times count the children it has reaped (a PostgreSQL backend that
    closed, a finished subprocess); the living descendants are added one by one.
    """
    import psutil

    total = 0.0
    for pid in root_pids:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _measure(trials: int, label: str, server_pids: list[int]) -> None:
    """In a fresh process on one server: a warm-up, a 2-trial and an N+2-trial sweep; print JSON.

    Besides wall time, the CPU the server side used (`server_pids` and their descendants: the
    Prefect server, and for PostgreSQL its postmaster with every backend).
    """
    import sweep_examples as examples

    from prefect_mltrain.blocks import DaskCompute
    from prefect_mltrain.flows import sweep, use_fast_heartbeats
    from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, choice, uniform

    use_fast_heartbeats()  # as the CLI does
    compute = DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
    )

    def timed(trial, space, n: int, name: str) -> tuple[float, float]:
        cpu, started = _tree_cpu(server_pids), time.perf_counter()
        sweep(
            trial=trial,
            search_space=space,
            objective=Objective("score", "maximize"),
            limits=Limits(max_total_trials=n, max_concurrent_trials=2),
            seed=0,
            name=f"{label}-{name}",
            compute=compute,
        )
        return time.perf_counter() - started, _tree_cpu(server_pids) - cpu

    # Warm-up: start the cluster and import on both workers (trials long enough for both slots).
    timed(FunctionTrial(examples.busy), {"x": uniform(0, 1), "seconds": choice([0.3])}, 4, "warm-up")
    trivial, space = FunctionTrial(examples.trivial), {"x": uniform(0, 1)}
    small, small_cpu = timed(trivial, space, 2, "small")
    total, total_cpu = timed(trivial, space, trials + 2, "overhead")
    result = {"per_trial": (total - small) / trials, "total": total, "server_cpu": (total_cpu - small_cpu) / trials}
    print("RESULT " + json.dumps(result))


def _run_arm(api_url: str, server_pids: list[int], home: Path, trials: int, label: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_MLTRAIN_HOME=str(home),  # one MLflow store and study folder for both arms
        PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]),
    )
    done = subprocess.run(
        [sys.executable, __file__, "--measure", label, "--trials", str(trials)]
        + ["--server-pids", ",".join(map(str, server_pids))],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    (home.parent / f"{label}.log").write_text(done.stdout + done.stderr)  # kept for a look at retries
    if done.returncode or "RESULT " not in done.stdout:
        raise SystemExit(f"the {label} measurement failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])


def _postmaster_pid(pg_url: str) -> int | None:
    """The pid of the PostgreSQL server's postmaster when it runs on this machine, else None."""
    import asyncio

    import asyncpg
    import psutil

    async def backend_pid() -> int:
        conn = await asyncpg.connect(f"{pg_url}/postgres")
        try:
            return int(await conn.fetchval("SELECT pg_backend_pid()"))
        finally:
            await conn.close()

    try:
        return psutil.Process(asyncio.run(backend_pid())).ppid()
    except psutil.NoSuchProcess:  # a server on another host
        return None


def _start_postgres_server(state: Path, pg_url: str) -> str:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        TEAM_PG_URL=pg_url,
        TEAM_STACK_NAME=f"bench_{uuid.uuid4().hex[:8]}",
        TEAM_STACK_SERVICES="prefect",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",  # as the embedded server
    )
    subprocess.run(["bash", str(TEAM / "start-team-stack.sh"), str(state)], env=env, check=True, timeout=300)
    line = next(x for x in (state / "team.env").read_text().splitlines() if "PREFECT_API_URL=" in x)
    return line.split("=", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=14, help="trivial trials per measured sweep (plus 2)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per server (the median is printed)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TEAM_PG_URL", "postgresql://mltrain:mltrain@127.0.0.1:5432"),
        help="postgresql://USER:PASSWORD@HOST:PORT of a server where USER may create databases",
    )
    # Internal: one arm in a fresh process, and the server processes whose CPU it counts.
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--server-pids", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(args.trials, args.measure, [int(p) for p in args.server_pids.split(",") if p])
        return

    from prefect_mltrain.server.stack import start_server
    from prefect_mltrain.system.net import free_port
    from prefect_mltrain.system.process import stop_pid

    base = Path(tempfile.mkdtemp(prefix="mltrain-bench-db-"))
    state, home = base / "pg-stack", base / "home"
    sqlite = start_server(base / "prefect-sqlite", free_port())
    try:
        postgres_url = _start_postgres_server(state, args.pg_url)
        postgres_pids = [int((state / "pids" / "prefect.pid").read_text())]
        postmaster = _postmaster_pid(args.pg_url)
        postgres_pids += [postmaster] if postmaster else []
        arms = {"sqlite": (sqlite.api_url, [sqlite.pid]), "postgresql": (postgres_url, postgres_pids)}
        runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
        for rep in range(args.repeats):
            # Alternate which server goes first, so a drift in the machine's load hits both.
            order = ["sqlite", "postgresql"] if rep % 2 == 0 else ["postgresql", "sqlite"]
            for arm in order:
                runs[arm].append(_run_arm(*arms[arm], home, args.trials, f"{arm}-{rep}"))
                print(
                    f"  {arm:10s} run {rep}: {runs[arm][-1]['per_trial'] * 1000:7.1f} ms/trial, "
                    f"server CPU {runs[arm][-1]['server_cpu'] * 1000:6.1f} ms/trial, "
                    f"load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        subprocess.run(
            ["bash", str(TEAM / "stop-team-stack.sh"), str(state), "--drop-databases"],
            env={**os.environ, "PATH": path},
            timeout=120,
        )
        stop_pid(sqlite.pid)  # type: ignore[arg-type]

    median = {arm: statistics.median(r["per_trial"] for r in runs[arm]) for arm in runs}
    whole = {arm: statistics.median(r["total"] / (args.trials + 2) for r in runs[arm]) for arm in runs}
    cpu = {arm: statistics.median(r["server_cpu"] for r in runs[arm]) for arm in runs}
    # Each repeat's two runs were next to each other in time: their ratio resists load drift.
    paired = [pg["per_trial"] / lite["per_trial"] for pg, lite in zip(runs["postgresql"], runs["sqlite"])]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; each run's output: {base}")
    print(f"[prefect database] {args.trials} trivial trials, 2 workers, 2 concurrent, median of {args.repeats}")
    for arm in ("sqlite", "postgresql"):
        each = ", ".join(f"{r['per_trial'] * 1000:.0f}" for r in runs[arm])
        print(
            f"  {arm:10s}: {median[arm] * 1000:7.1f} ms/trial amortised (runs: {each}; "
            f"whole sweep incl. fixed cost: {whole[arm] * 1000:.0f} ms/trial)"
        )
    for arm in ("sqlite", "postgresql"):
        print(
            f"  {arm:10s}: server CPU {cpu[arm] * 1000:6.1f} ms/trial (its processes and, for PostgreSQL, the database's)"
        )
    print(f"  ratio PostgreSQL / SQLite: {median['postgresql'] / median['sqlite']:.2f} (target: at most 1.2)")
    print(
        f"  the same, median of each repeat's pair: {statistics.median(paired):.2f} "
        f"(pairs: {', '.join(f'{r:.2f}' for r in paired)}); server CPU: {cpu['postgresql'] / cpu['sqlite']:.2f}"
    )


if __name__ == "__main__":
    main()
