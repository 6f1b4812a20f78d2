"""Why a job's processes must stop, told to them through the Dask scheduler.

A job's processes run on Dask workers that share no files with the flow, so the reason travels
as a Dask `Variable` named after the job: empty while they may go on, the reason once one of
them failed (a distributed job's other ranks are killed) or the job's MLflow run could not be
made. Each process polls it twice a second while its command runs.

A worker in the flow's own process (the in-process compute, the default of jobs) reads the
flow's `JobStop` directly: a Dask client made there would become the process's default client,
which prefect-dask then prefers over the address of any later task runner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: The flow's stops in this process, by name: what a worker thread of this process reads.
_here: dict[str, JobStop] = {}


class JobStop:
    """The flow's side: set the reason once; processes started later or earlier all see it.

    A reason given before `attach` (the MLflow run failed while the cluster was starting) is
    kept and published on `attach`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._variable: Any = None

    def attach(self, dask_client: Any) -> None:
        """Publish on the scheduler of `dask_client` (empty, or a reason given before)."""
        import distributed

        with self._lock:
            _here[self.name] = self
            self._variable = distributed.Variable(self.name, client=dask_client)
            self._variable.set(self._reason or "")

    def stop(self, reason: str) -> None:
        """Tell every process of the job to stop, because of `reason` (the first reason stays)."""
        with self._lock:
            if self._reason:
                return
            self._reason = reason
            if self._variable is not None:
                self._variable.set(reason)

    @property
    def reason(self) -> str | None:
        return self._reason

    def close(self) -> None:
        """Remove the variable from the scheduler (best effort: the job is over)."""
        _here.pop(self.name, None)
        with self._lock:
            if self._variable is not None:
                try:
                    self._variable.delete()
                except Exception:  # noqa: BLE001 - the cluster may be closing
                    pass
                self._variable = None


def stop_reason_poller(name: str) -> Callable[[], str | None]:
    """The process's side: a callable that says why to stop (None: go on).

    Outside a Dask worker (no scheduler to ask) it always says go on.
    """
    if name in _here:  # the flow is in this process
        stop = _here[name]
        return lambda: stop.reason
    import distributed

    try:
        variable = distributed.Variable(name, client=distributed.get_client())
    except ValueError:  # not in a Dask worker or client context
        return lambda: None

    def reason() -> str | None:
        try:
            return variable.get(timeout=2) or None
        except Exception:  # noqa: BLE001 - timeout or a closing scheduler: nothing says stop
            return None

    return reason
