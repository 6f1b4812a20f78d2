"""Run a child process and hand each line of its output to a callback while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessResult:
    """How a child process ended."""

    exit_code: int
    stderr_tail: str
    output_tail: str
    seconds: float
    timed_out: bool
    stopped: bool = False


def stream_process(
    argv: Sequence[str],
    *,
    on_line: Callable[[str, str], None],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    tail_lines: int = 40,
    should_stop: Callable[[], bool] | None = None,
) -> ProcessResult:
    """Run `argv`, calling `on_line(stream, line)` for every stdout/stderr line as it arrives.

    The child runs in its own process group, so a timeout kills its children too.

    Args:
        argv: Program and arguments.
        on_line: Called with `"stdout"` or `"stderr"` and the line without its newline.
        env: Environment of the child; the parent's when None.
        cwd: Working directory of the child.
        timeout: Seconds after which the whole process group is killed.
        tail_lines: How many last lines to keep for error messages.
        should_stop: Polled twice a second; when it says True the process group is killed.

    Returns:
        The exit code and the last lines of stderr and of all output.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        bufsize=1,
        text=True,
        errors="replace",
    )
    output = _Output(on_line, tail_lines)
    pumps = output.pump_all(proc)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        timed_out, stopped = _wait(proc, deadline, should_stop)
    except BaseException:
        # Cancellation or Ctrl-C of the caller: never leave the job running behind it.
        _kill_group(proc)
        raise
    for thread in pumps:
        thread.join()
    return ProcessResult(
        exit_code=proc.returncode,
        stderr_tail="\n".join(output.stderr_tail),
        output_tail="\n".join(output.output_tail),
        seconds=time.perf_counter() - started,
        timed_out=timed_out,
        stopped=stopped,
    )


class _Output:
    """A child's stdout and stderr read line by line, each line handed to `on_line` and kept in the tails."""

    def __init__(self, on_line: Callable[[str, str], None], tail_lines: int) -> None:
        self.on_line = on_line
        self.stderr_tail: deque[str] = deque(maxlen=tail_lines)
        self.output_tail: deque[str] = deque(maxlen=tail_lines)
        self.lock = threading.Lock()

    def pump_all(self, proc: subprocess.Popen) -> list[threading.Thread]:  # type: ignore[type-arg]
        """Start one reader thread per pipe; they end when the child closes its pipes."""
        pumps = [
            threading.Thread(target=self.pump, args=("stdout", proc.stdout), daemon=True),
            threading.Thread(target=self.pump, args=("stderr", proc.stderr), daemon=True),
        ]
        for thread in pumps:
            thread.start()
        return pumps

    def pump(self, stream_name: str, pipe) -> None:  # type: ignore[no-untyped-def]
        for raw in pipe:
            line = raw.rstrip("\n")
            with self.lock:
                self.output_tail.append(line)
                if stream_name == "stderr":
                    self.stderr_tail.append(line)
                self.on_line(stream_name, line)
        pipe.close()


def _wait(
    proc: subprocess.Popen,  # type: ignore[type-arg]
    deadline: float | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[bool, bool]:
    """Wait for the child to exit; kill its group at `deadline` or when `should_stop()` says True.

    Returns:
        Whether it timed out, and whether it was stopped.
    """
    timed_out = stopped = False
    while proc.poll() is None:
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            _kill_group(proc)
        elif should_stop is not None and should_stop():
            stopped = True
            _kill_group(proc)
        else:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                proc.wait(timeout=0.5 if should_stop else left)  # should_stop is polled twice a second
            except subprocess.TimeoutExpired:
                pass
    return timed_out, stopped


def _kill_group(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop a process group (a server or job started in its own session): SIGTERM, then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
