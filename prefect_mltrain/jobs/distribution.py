"""Distributed command jobs: place one process per slot on Dask workers, with launcher variables.

Pure logic: what `torchrun` / `mpirun` would set for each process, and which Dask worker runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from prefect_mltrain.errors import (
    ComputeError,
    ConfigurationError,
    DistributedTrainingError,
)

DISTRIBUTION_TYPES = ("pytorch", "mpi")


@dataclass(frozen=True)
class Slot:
    """One process of a distributed job."""

    worker: str
    rank: int
    local_rank: int
    node_rank: int


def check_distribution(distribution: dict | None, instance_count: int) -> tuple[str, int]:
    """Validate Azure ML's `distribution` and `instance_count`; return (type, processes per instance).

    >>> check_distribution({"type": "pytorch", "process_count_per_instance": 2}, 1)
    ('pytorch', 2)
    >>> check_distribution(None, 1)
    ('single', 1)
    """
    if not isinstance(instance_count, int) or instance_count < 1:
        raise ConfigurationError(f"`instance_count` must be an integer >= 1, but got {instance_count=}.")
    if distribution is None:
        return ("single", 1) if instance_count == 1 else ("pytorch", 1)
    kind = distribution.get("type")
    if kind not in DISTRIBUTION_TYPES:
        raise ConfigurationError(f"`distribution.type` must be one of {list(DISTRIBUTION_TYPES)}, but got {kind!r}.")
    per_instance = distribution.get("process_count_per_instance", 1)
    if not isinstance(per_instance, int) or per_instance < 1:
        raise ConfigurationError(
            f"`distribution.process_count_per_instance` must be an integer >= 1, but got {per_instance!r}."
        )
    unknown = sorted(set(distribution) - {"type", "process_count_per_instance"})
    if unknown:
        raise ConfigurationError(f"`distribution` has unknown keys {unknown}; valid: type, process_count_per_instance.")
    return kind, per_instance


def place(workers: dict[str, int], instance_count: int, per_instance: int) -> list[Slot]:
    """Give each instance its own Dask worker and each of its processes a thread there.

    All ranks must run at once to meet at the rendezvous, so a cluster that cannot hold them
    is refused instead of left to hang.

    Args:
        workers: Worker address -> number of threads.
        instance_count: Instances (nodes) wanted.
        per_instance: Processes per instance.

    >>> [(s.worker, s.rank, s.local_rank) for s in place({"tcp://a:1": 2, "tcp://b:1": 2}, 2, 2)]
    [('tcp://a:1', 0, 0), ('tcp://a:1', 1, 1), ('tcp://b:1', 2, 0), ('tcp://b:1', 3, 1)]
    """
    fitting = [addr for addr, threads in sorted(workers.items()) if threads >= per_instance]
    if len(fitting) < instance_count:
        raise ComputeError(
            f"The job needs {instance_count} Dask worker(s) with at least {per_instance} thread(s) "
            f"each ({instance_count} x {per_instance} processes that must all run at once), but the "
            f"cluster has {len(workers)} worker(s) with threads {sorted(workers.values())}. Fix: give "
            f"the DaskCompute more workers or threads, e.g. cluster_kwargs={{'n_workers': "
            f"{instance_count}, 'threads_per_worker': {per_instance}}}, or ask for fewer processes."
        )
    return [
        Slot(worker, node * per_instance + local, local, node)
        for node, worker in enumerate(fitting[:instance_count])
        for local in range(per_instance)
    ]


def launcher_environment(
    slot: Slot, world_size: int, per_instance: int, master_addr: str, master_port: int, kind: str
) -> dict[str, str]:
    """The variables torchrun (and, for `mpi`, Open MPI) set for a process.

    >>> env = launcher_environment(Slot("tcp://a:1", 3, 1, 1), 4, 2, "10.0.0.1", 29500, "pytorch")
    >>> env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["NODE_RANK"], env["MASTER_PORT"]
    ('3', '1', '4', '1', '29500')
    """
    env = {
        "WORLD_SIZE": str(world_size),
        "RANK": str(slot.rank),
        "LOCAL_RANK": str(slot.local_rank),
        "LOCAL_WORLD_SIZE": str(per_instance),
        "NODE_RANK": str(slot.node_rank),
        "GROUP_RANK": str(slot.node_rank),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }
    if kind == "mpi":
        env |= {
            "OMPI_COMM_WORLD_RANK": str(slot.rank),
            "OMPI_COMM_WORLD_SIZE": str(world_size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(slot.local_rank),
            "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_instance),
            "PMI_RANK": str(slot.rank),
            "PMI_SIZE": str(world_size),
        }
    return env


def worker_host(address: str) -> str:
    """The host part of a Dask worker address (`inproc://` and local ones give 127.0.0.1).

    >>> worker_host("tcp://10.0.0.5:40123"), worker_host("inproc://192.0.2.2/6541/1")
    ('10.0.0.5', '127.0.0.1')
    """
    if address.startswith("inproc://"):
        return "127.0.0.1"
    return urlparse(address).hostname or "127.0.0.1"


@dataclass(frozen=True)
class RankPlacement:
    """Where one rank runs: its Dask worker, node index and local rank."""

    rank: int
    worker: str
    host: str
    node: int
    local_rank: int


def place_ranks(workers: dict[str, dict[str, Any]], nodes: int, processes_per_node: int) -> list[RankPlacement]:
    """Map `nodes` x `processes_per_node` ranks onto distinct Dask workers, node by node.

    Args:
        workers: The scheduler's `{address: info}` (info has `host`).
        nodes: Hosts to use.
        processes_per_node: Ranks (workers) per host.

    Raises:
        DistributedTrainingError: Not enough hosts or workers per host; nothing was started, since
            ranks that cannot all run at once would wait for each other forever.

    >>> ws = {"tcp://a:1": {"host": "a"}, "tcp://a:2": {"host": "a"}, "tcp://b:1": {"host": "b"}}
    >>> [(p.rank, p.worker, p.local_rank) for p in place_ranks(ws, 1, 2)]
    [(0, 'tcp://a:1', 0), (1, 'tcp://a:2', 1)]
    """
    by_host: dict[str, list[str]] = {}
    for address, info in sorted(workers.items()):
        by_host.setdefault(str(info.get("host") or address.split("://")[-1].rsplit(":", 1)[0]), []).append(address)
    usable = sorted(
        (h for h, ws in by_host.items() if len(ws) >= processes_per_node), key=lambda h: (-len(by_host[h]), h)
    )
    if len(usable) < nodes:
        layout = {h: len(ws) for h, ws in by_host.items()}
        raise DistributedTrainingError(
            f"`nodes`={nodes} x `processes_per_node`={processes_per_node} needs {nodes} host(s) with at "
            f"least {processes_per_node} Dask worker(s) each (one rank per worker, all running at "
            f"once), but the cluster has workers per host {layout}. Fix: start more workers (e.g. "
            f"`cluster_kwargs={{'n_workers': {processes_per_node}}}`, one per GPU with dask-cuda) "
            f"or lower `nodes`/`processes_per_node`."
        )
    placements: list[RankPlacement] = []
    for node, host in enumerate(usable[:nodes]):
        for local_rank, worker in enumerate(by_host[host][:processes_per_node]):
            placements.append(RankPlacement(len(placements), worker, host, node, local_rank))
    return placements
