"""The one place Optuna is imported (lazily, with an install hint when it is missing), and the
journal storage that sweeps keep their studies in."""

from __future__ import annotations

import fcntl
import threading
from typing import Any

from prefect_mltrain.errors import missing_extra


def import_optuna() -> Any:
    """Import and return `optuna`.

    Raises:
        MissingDependencyError: Optuna is not installed; the message gives the pip command.
    """
    try:
        import optuna
    except ImportError:
        raise missing_extra("optuna", "sweep") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def journal_storage(path: str) -> Any:
    """An Optuna `JournalStorage` on the journal file `path`, or on a `JournalServer`'s URL.

    A file is locked with `flock` on `<path>.lock`: Optuna's default symlink lock retries a held
    lock with sleeps that double up to 1 s, so a trial that finds it held can sleep on long after
    it is free; `flock` queues the waiter in the kernel and wakes it at the release. It holds
    across processes on one machine and on NFSv4 mounts. An `http://` URL is the same file,
    served by the sweep's flow to workers on other machines (`sweep.journal_http`).
    """
    optuna = import_optuna()
    if path.startswith(("http://", "https://")):
        from prefect_mltrain.sweep.journal_http import http_backend

        return optuna.storages.JournalStorage(http_backend(path))
    return optuna.storages.JournalStorage(file_backend(path))


def file_backend(path: str) -> Any:
    """Optuna's `JournalFileBackend` on `path`, locked with `flock` (see `journal_storage`)."""
    import_optuna()
    from optuna.storages.journal import JournalFileBackend

    return JournalFileBackend(path, lock_obj=FlockLock(f"{path}.lock"))  # type: ignore[arg-type]


class FlockLock:
    """An exclusive `flock` on a lock file, one descriptor per thread (Optuna's journal lock interface)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._held = threading.local()

    def acquire(self) -> bool:
        handle = open(self._path, "a")  # noqa: SIM115 - closed in release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._held.handle = handle
        return True

    def release(self) -> None:
        handle = self._held.__dict__.pop("handle", None)
        if handle is None:
            raise RuntimeError(f"the journal lock {self._path} is not held by this thread")
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
