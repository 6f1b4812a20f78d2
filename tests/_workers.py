"""Start Prefect workers and run the `prefect` CLI as a user does, against the test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def prefect_env(**extra: str) -> dict[str, str]:
    """The environment the CLI and workers run with: the test server's API, the project home."""
    return {**os.environ, "PWD": str(ROOT), **extra}


def prefect_cli(*args: str, timeout: float = 300, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `prefect --no-prompt <args>` from the repository root; fail with its output."""
    out = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=prefect_env(**env),
        timeout=timeout,
    )
    if check:
        assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


class Worker:
    """A `prefect worker start` subprocess in its own process group, its output in a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the worker and everything it started (its process group)."""
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # whatever the worker started and left behind in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def worker(pool: str, worker_type: str, log_dir: Path, limit: int = 2, **env: str) -> Iterator[Worker]:
    """`prefect worker start --pool <pool> --type <worker_type>`, polling every second, stopped at exit."""
    log_path = log_dir / f"worker-{pool}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--type", worker_type, "--limit", str(limit)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=prefect_env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="10", **env),
            start_new_session=True,
        )
    started = Worker(proc, log_path)
    try:
        yield started
    finally:
        started.stop()


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    """Poll `predicate()` until it returns something truthy; return it, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
