"""`DaskCompute`: where tasks run. An existing scheduler, or a Dask cluster class started for you."""

from __future__ import annotations

import atexit
import contextvars
import functools
import importlib
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from prefect_mltrain.compute.devices import visible_gpu_count
from prefect_mltrain.compute.spawning import main_not_rerun
from prefect_mltrain.errors import ComputeError, ConfigurationError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.imports import import_from_path

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

    from prefect_mltrain.compute.warm import WarmCompute

logger = logging.getLogger("prefect_mltrain.compute")

LOCAL_CLUSTER = "distributed.LocalCluster"
LOCAL_CUDA_CLUSTER = "dask_cuda.LocalCUDACluster"

# Clusters started with `reuse_cluster=True`, one per configuration and Python process.
_clusters: dict[str, Any] = {}
_clusters_lock = threading.Lock()


def _import_object(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(f"`cluster_class`={path!r} must be a dotted import path such as {LOCAL_CLUSTER!r}.")
    try:
        return import_from_path(path)
    except ImportError as exc:
        hint = " Install it with: pip install 'prefect-mltrain[gpu]'" if "dask_cuda" in path else ""
        raise ConfigurationError(f"`cluster_class`={path!r} cannot be imported: {exc}.{hint}") from None
    except AttributeError:
        raise ConfigurationError(
            f"`cluster_class`={path!r}: module {module_name!r} has no attribute {attr!r}."
        ) from None


class DaskCompute(Block):
    """A Dask compute target for training tasks: an existing scheduler or a cluster class.

    With no fields set it starts a `distributed.LocalCluster` on this machine, or dask-cuda's
    `LocalCUDACluster` (one worker per GPU) where GPUs and dask-cuda are present. With
    `PREFECT_MLTRAIN_WARM_COMPUTE=true` (opt-in) it runs on the project home's warm local Dask
    cluster instead (started once, kept between flows, one worker process per core: `compute.warm`).

    Example:
        ```python
        from prefect_mltrain.blocks import DaskCompute

        DaskCompute(address="tcp://10.0.0.5:8786").save("gpu-box")
        compute = DaskCompute.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Dask Compute"
    _logo_url = None  # type: ignore[assignment]
    _description = "A Dask cluster or scheduler address on which prefect-mltrain runs training tasks."

    address: str | None = Field(
        default=None,
        title="Scheduler address",
        description="Address of a running Dask scheduler, e.g. `tcp://10.0.0.5:8786`. "
        "When set, `cluster_class` is not used.",
    )
    cluster_class: str = Field(
        default="auto",
        title="Cluster class",
        description="Import path of the Dask cluster class to start, e.g. "
        "`distributed.LocalCluster`, `dask_cuda.LocalCUDACluster` or "
        "`dask_jobqueue.SLURMCluster`; `auto` picks LocalCUDACluster where GPUs exist.",
    )
    cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        title="Cluster keyword arguments",
        description='Keyword arguments for the cluster class, e.g. `{"n_workers": 2}`.',
    )
    adapt_kwargs: dict[str, Any] | None = Field(
        default=None,
        title="Adaptive scaling",
        description='Keyword arguments for `cluster.adapt()`, e.g. `{"minimum": 1, '
        '"maximum": 8}`; leave empty for a fixed-size cluster.',
    )
    gpus_per_trial: float = Field(
        default=0,
        ge=0,
        title="GPUs per trial",
        description="GPUs each training task needs, requested as the Dask resource `GPU`.",
    )
    reuse_cluster: bool = Field(
        default=True,
        title="Reuse cluster",
        description="Start the cluster once per Python process and reuse it for later flow "
        "runs in that process, instead of paying its start-up on every run.",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        title="Connect timeout",
        description="Seconds to wait when checking that `address` answers.",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value if "://" in value else f"tcp://{value}")
        if not parsed.hostname or parsed.port is None:
            raise ValueError(
                f"`address` must look like 'tcp://HOST:PORT', but got {value!r}. "
                f"Fix: give the scheduler's host and port, e.g. 'tcp://10.0.0.5:8786'."
            )
        return value

    def resolved_cluster_class(self) -> str:
        """The cluster class this block starts, after `auto` and the no-GPU fall-back.

        Returns:
            An import path; LocalCluster when dask-cuda was asked for but no GPU is visible.
        """
        wanted = self.cluster_class
        gpus = visible_gpu_count() if wanted in ("auto", LOCAL_CUDA_CLUSTER) else 0
        if wanted == "auto":
            if gpus == 0:
                return LOCAL_CLUSTER
            try:
                importlib.import_module("dask_cuda")
            except ImportError:
                logger.warning(
                    "%d GPU(s) visible but dask-cuda is not installed; using %s. For one "
                    "worker per GPU: pip install 'prefect-mltrain[gpu]'",
                    gpus,
                    LOCAL_CLUSTER,
                )
                return LOCAL_CLUSTER
            return LOCAL_CUDA_CLUSTER
        if wanted == LOCAL_CUDA_CLUSTER and gpus == 0:
            logger.warning(
                "cluster_class=%s but no GPU is visible (nvidia-smi finds none, or "
                "CUDA_VISIBLE_DEVICES is empty); falling back to %s.",
                wanted,
                LOCAL_CLUSTER,
            )
            return LOCAL_CLUSTER
        return wanted

    @classmethod
    def in_process(cls, threads: int = 8) -> DaskCompute:
        """A Dask cluster of `threads` threads in this process: the default of work that gains
        nothing from worker processes (a command job runs in a process of its own; a single fit
        would pay seconds of worker start-up and imports for nothing).

        >>> DaskCompute.in_process().cluster_kwargs["processes"]
        False
        """
        return cls(
            cluster_class=LOCAL_CLUSTER,
            cluster_kwargs={"processes": False, "n_workers": 1, "threads_per_worker": threads},
        )

    def check_reachable(self) -> None:
        """Fail fast when `address` is set and nothing answers there.

        Raises:
            ComputeError: The scheduler cannot be reached; the message says how to fix it.
        """
        if self.address is None:
            return
        parsed = urlparse(self.address if "://" in self.address else f"tcp://{self.address}")
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=self.connect_timeout):
                pass
        except OSError as exc:
            raise ComputeError(
                f"The Dask scheduler at `address`={self.address!r} cannot be reached ({exc}). "
                f"Fix: start it (`dask scheduler --port {parsed.port}` and `dask worker "
                f"{self.address}`), or correct the address."
            ) from None

    def runs_on_this_machine(self) -> bool:
        """Whether the workers run on this machine, seeing its files: a local cluster this block starts.

        >>> DaskCompute().runs_on_this_machine(), DaskCompute(address="tcp://10.0.0.5:8786").runs_on_this_machine()
        (True, False)
        """
        return self.address is None and self.cluster_class in ("auto", LOCAL_CLUSTER, LOCAL_CUDA_CLUSTER)

    def worker_resources(self) -> dict[str, float]:
        """Dask resources each training task asks for (`{"GPU": n}` when it needs GPUs)."""
        return {"GPU": self.gpus_per_trial} if self.gpus_per_trial else {}

    def _cluster_kwargs(self, cluster_class: str) -> dict[str, Any]:
        kwargs = dict(self.cluster_kwargs)
        if cluster_class in (LOCAL_CLUSTER, LOCAL_CUDA_CLUSTER):
            # A fixed dashboard port clashes between concurrent flow runs; pick a free one, on
            # loopback only (the dashboard runs code-free but shows every task: not for the LAN).
            kwargs.setdefault("dashboard_address", "127.0.0.1:0")
        if cluster_class == LOCAL_CLUSTER and self.gpus_per_trial:
            kwargs.setdefault("resources", {"GPU": visible_gpu_count() or 1})
        return kwargs

    def _start_cluster(self, cluster_class: str, kwargs: dict[str, Any]) -> Any:
        cluster = _import_object(cluster_class)(**kwargs)
        if self.adapt_kwargs:
            cluster.adapt(**self.adapt_kwargs)
        return cluster

    def _shared_cluster_address(self, cluster_class: str) -> str:
        kwargs = self._cluster_kwargs(cluster_class)
        key = repr((cluster_class, sorted(kwargs.items()), self.adapt_kwargs))
        with _clusters_lock:
            cluster = _clusters.get(key)
            if cluster is None or cluster.status.name in ("closed", "closing", "failed"):
                # The scheduler runs in this process; its INFO lines would flood flow logs.
                logging.getLogger("distributed").setLevel(logging.WARNING)
                # Started in an empty context: a threaded cluster's workers would otherwise run
                # every later task in a copy of this caller's contexts, Prefect's client among
                # them, long after this flow run closed it.
                with main_not_rerun():
                    cluster = contextvars.Context().run(self._start_cluster, cluster_class, kwargs)
                if not _clusters:
                    atexit.register(close_shared_clusters)  # before logging shuts down
                _clusters[key] = cluster
        return str(cluster.scheduler_address)

    def wants_warm_compute(self, cluster_class: str) -> bool:
        """Whether this block runs on the home's warm cluster: the default compute, warm compute on.

        Any field that asks for something the warm cluster does not give (an address, sizing,
        adaptive scaling, GPUs, a cluster per run) keeps a cluster of its own.

        >>> import os
        >>> os.environ["PREFECT_MLTRAIN_WARM_COMPUTE"] = "true"
        >>> DaskCompute().wants_warm_compute(LOCAL_CLUSTER), DaskCompute.in_process().wants_warm_compute(LOCAL_CLUSTER)
        (True, False)
        >>> del os.environ["PREFECT_MLTRAIN_WARM_COMPUTE"]
        >>> DaskCompute().wants_warm_compute(LOCAL_CLUSTER)
        False
        """
        default = (
            self.address is None
            and cluster_class == LOCAL_CLUSTER
            and self.cluster_class in ("auto", LOCAL_CLUSTER)
            and not self.cluster_kwargs
            and not self.adapt_kwargs
            and not self.gpus_per_trial
            and self.reuse_cluster
        )
        return default and MltrainSettings().warm_compute

    def _warm_compute(self) -> WarmCompute | None:
        """The warm cluster (started if needed), or None where this flow cannot use it."""
        from prefect.settings import PREFECT_API_URL

        from prefect_mltrain.compute.warm import ensure_warm_compute, environment_key

        api_url = PREFECT_API_URL.value()
        try:
            warm = ensure_warm_compute(api_url=api_url)
        except ComputeError as exc:
            logger.warning("%s\nThis flow starts a Dask cluster of its own instead.", exc)
            return None
        if warm.environment != environment_key(api_url):
            logger.warning(
                "The warm Dask compute at %s was started with another Prefect API or other "
                "PREFECT_MLTRAIN_* settings than this flow's; this flow starts a Dask cluster of its "
                "own. Fix: `prefect-mltrain server stop`, then run again in this environment (or set "
                "PREFECT_MLTRAIN_WARM_COMPUTE=false).",
                warm.address,
            )
            return None
        return warm

    def task_runner(self) -> DaskTaskRunner:
        """A prefect-dask `DaskTaskRunner` for this compute target.

        Raises:
            ComputeError: `address` is set and does not answer.
            ConfigurationError: `cluster_class` cannot be imported.
        """
        if self.address:
            self.check_reachable()
            return _task_runner_class()(address=self.address)
        cluster_class = self.resolved_cluster_class()
        if self.wants_warm_compute(cluster_class) and (warm := self._warm_compute()):
            runner = _warm_task_runner_class()(address=warm.address)
            runner.expected_workers = warm.n_workers  # type: ignore[attr-defined]
            return runner
        if self.reuse_cluster:
            return _task_runner_class()(address=self._shared_cluster_address(cluster_class))
        _import_object(cluster_class)  # fail here, in the flow, with a clear message
        return _task_runner_class()(
            cluster_class=cluster_class,
            cluster_kwargs=self._cluster_kwargs(cluster_class),
            adapt_kwargs=self.adapt_kwargs,
        )


@functools.cache
def _task_runner_class() -> type[DaskTaskRunner]:
    """prefect-dask's `DaskTaskRunner`, whose local cluster's workers do not re-run `__main__`."""
    from prefect_dask import DaskTaskRunner

    class LocalDaskTaskRunner(DaskTaskRunner):
        def __enter__(self) -> LocalDaskTaskRunner:
            with main_not_rerun():  # its workers start here (see `compute.spawning`)
                return super().__enter__()

    return LocalDaskTaskRunner


@functools.cache
def _warm_task_runner_class() -> type[DaskTaskRunner]:
    """A `DaskTaskRunner` on the warm cluster whose workers adopt this flow's code and directory."""
    from prefect_dask import DaskTaskRunner

    from prefect_mltrain.compute.flow_code import FlowCode, adopt_flow_code, user_code_paths

    class WarmDaskTaskRunner(DaskTaskRunner):
        def __enter__(self) -> WarmDaskTaskRunner:
            runner = super().__enter__()
            paths, cwd = user_code_paths(), os.getcwd()
            # The scheduler unpickles the task graph too, so it imports the flow's modules as well.
            self.client.run_on_scheduler(adopt_flow_code, paths, cwd)
            self.client.register_plugin(FlowCode(paths, cwd))
            return runner

    return WarmDaskTaskRunner


def close_shared_clusters() -> None:
    """Close the clusters kept by `reuse_cluster=True` (also done at interpreter exit)."""
    with _clusters_lock:
        for cluster in _clusters.values():
            try:
                cluster.close()
            except Exception:  # closing is best effort at shutdown
                pass
        _clusters.clear()
