"""Distributed command jobs: one process per slot on Dask workers, with torchrun's variables."""

import textwrap
import time

import pytest

from prefect_mltrain.errors import ComputeError, ConfigurationError
from prefect_mltrain.flows import train_job
from tests.helpers import flow_run_logs

# Rank 0 listens on MASTER_ADDR:MASTER_PORT until every other rank has checked in, as a
# process-group rendezvous does: it only passes when all ranks run at the same time.
RENDEZVOUS = textwrap.dedent("""
    import os, socket, sys, time
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if os.environ.get("FAIL_RANK") == str(rank):
        print("rank", rank, "giving up", file=sys.stderr); sys.exit(5)
    if rank == 0:
        server = socket.create_server((addr, port)); server.settimeout(60)
        seen = sorted(int(server.accept()[0].recv(16)) for _ in range(world - 1))
        print("rendezvous complete", seen, flush=True)
    else:
        for _ in range(600):
            try:
                socket.create_connection((addr, port), timeout=1).sendall(str(rank).encode()); break
            except OSError:
                time.sleep(0.1)
    print(f"rank={rank} local_rank={os.environ['LOCAL_RANK']} node_rank={os.environ['NODE_RANK']} world={world}", flush=True)
""")


@pytest.fixture
def source(tmp_path):
    (tmp_path / "ddp.py").write_text(RENDEZVOUS)
    return tmp_path


def test_processes_per_instance_meet_at_the_rendezvous(source, project_home):
    result = train_job(
        script="ddp.py", source_directory=str(source), distribution={"type": "pytorch", "process_count_per_instance": 3}
    )
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "rendezvous complete")
    assert "rendezvous complete [1, 2]" in logs
    assert {m for m in logs if m.startswith("rank=")} == {
        f"rank={r} local_rank={r} node_rank=0 world=3" for r in range(3)
    }
    user_logs = sorted(
        p.name for p in (project_home / "runs" / result.flow_run_url.rsplit("/", 1)[-1] / "user_logs").iterdir()
    )
    assert user_logs == ["std_log_process_00.txt", "std_log_process_01.txt", "std_log_process_02.txt"]


def test_instances_map_to_distinct_workers(source, compute):
    result = train_job(
        script="ddp.py",
        source_directory=str(source),
        compute=compute,
        instance_count=2,
        distribution={"type": "mpi", "process_count_per_instance": 1},
    )
    flow_run_id = result.flow_run_url.rsplit("/", 1)[-1]
    flow_run_logs(flow_run_id, "rank=0")  # the ranks' lines reach the API in either order
    logs = flow_run_logs(flow_run_id, "rank=1")
    assert {"rank=0 local_rank=0 node_rank=0 world=2", "rank=1 local_rank=0 node_rank=1 world=2"} <= set(logs)


def test_a_cluster_too_small_is_refused_not_hung(source, compute):
    state = train_job(
        script="ddp.py", source_directory=str(source), compute=compute, instance_count=3, return_state=True
    )
    with pytest.raises(ComputeError, match=r"needs 3 Dask worker\(s\) .* the cluster has 2 worker\(s\)"):
        state.result()


def test_a_failing_rank_fails_the_job(source):
    from prefect_mltrain.blocks import TrainingEnvironment

    env = TrainingEnvironment(environment_variables={"FAIL_RANK": "1"})
    started = time.monotonic()
    state = train_job(
        script="ddp.py",
        source_directory=str(source),
        environment=env,
        return_state=True,
        distribution={"type": "pytorch", "process_count_per_instance": 2},
        timeout_seconds=30,
    )
    with pytest.raises(
        Exception,
        match=r"Rank 1 of 2 failed first \(ranks failed: \[0, 1\]\)\. The job.s command exited with code 5\. Last lines of stderr:\nrank 1 giving up",
    ):
        state.result()
    assert time.monotonic() - started < 25  # rank 0 was stopped, not left waiting for the 30 s timeout


@pytest.mark.parametrize(
    "distribution, message",
    [
        ({"type": "tensorflow"}, r"`distribution.type` must be one of \['pytorch', 'mpi'\]"),
        ({"type": "pytorch", "process_count_per_instance": 0}, r"process_count_per_instance` must be an integer >= 1"),
        ({"type": "pytorch", "node_count": 2}, r"unknown keys \['node_count'\]"),
    ],
)
def test_bad_distribution(source, distribution, message):
    state = train_job(script="ddp.py", source_directory=str(source), distribution=distribution, return_state=True)
    with pytest.raises(ConfigurationError, match=message):
        state.result()


def test_rendezvous_port_is_free_on_a_remote_rank0_worker(source):
    """MASTER_PORT is asked of the rank-0 worker: ports busy on its host are never handed out."""
    import socket

    from prefect_mltrain.blocks import DaskCompute

    host = "127.0.0.2"  # a host other than this flow's 127.0.0.1, as a remote worker's is
    remote = DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": 1,
            "processes": False,
            "protocol": "tcp://",
            "host": host,
        },
    )
    busy = []
    for port in range(29500, 30000):  # torch's usual range, taken by other jobs' rendezvous
        sock = socket.socket()
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            continue
        sock.listen()
        busy.append(sock)
    try:
        result = train_job(
            script="ddp.py",
            source_directory=str(source),
            compute=remote,
            instance_count=2,
            distribution={"type": "pytorch", "process_count_per_instance": 1},
        )
    finally:
        for sock in busy:
            sock.close()
    logs = flow_run_logs(result.flow_run_url.rsplit("/", 1)[-1], "rendezvous complete")
    assert "rendezvous complete [1]" in logs
