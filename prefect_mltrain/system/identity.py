"""Which process this is, in a form another process can later check: is it still alive?

A pid alone proves nothing: pids are reused, hostnames repeat across machines and containers,
and a container sees only its own pid namespace. A `ProcessIdentity` names a process by its
host, machine id, boot id, pid namespace, pid and start time (`/proc/<pid>/stat`), so that
another process judges it only where it can see it, and a reused pid is told apart from the
original. Linux only: elsewhere there is no identity, and nothing is ever judged dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_CURRENT: dict[int, ProcessIdentity | None] = {}  # by pid: a forked child is another process


def _read(path: str, size: int = 12) -> str:
    """The first `size` alphanumeric characters of a small system file ('' where it is missing)."""
    try:
        return "".join(c for c in Path(path).read_text() if c.isalnum())[:size]
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot, `/proc/<pid>/stat`); None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # dead, waiting for its parent to reap it
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, named so that it is told apart from any other, even one given the same pid later.

    Example:
        >>> me = ProcessIdentity("box", "a1", "b2", "4026531836", 1234, 98765)
        >>> me.token()
        'a1.b2.4026531836.1234.98765'
        >>> ProcessIdentity.parse("box", me.token()) == me
        True
        >>> ProcessIdentity.parse("box", "not-a-token") is None
        True
    """

    host: str
    machine: str
    boot: str
    pid_namespace: str
    pid: int
    start: int

    @classmethod
    def current(cls) -> ProcessIdentity | None:
        """This process (None where `/proc` does not tell its start time: not Linux)."""
        pid = os.getpid()
        if pid not in _CURRENT:
            start = start_time(pid)
            namespace = "".join(c for c in _readlink("/proc/self/ns/pid") if c.isdigit())
            _CURRENT[pid] = (
                None
                if start is None
                else cls(
                    socket.gethostname(),
                    _read("/etc/machine-id"),
                    _read("/proc/sys/kernel/random/boot_id"),
                    namespace,
                    pid,
                    start,
                )
            )
        return _CURRENT[pid]

    def token(self) -> str:
        """Everything but the host, as one string (`parse` reads it back)."""
        return f"{self.machine}.{self.boot}.{self.pid_namespace}.{self.pid}.{self.start}"

    @classmethod
    def parse(cls, host: str, token: str) -> ProcessIdentity | None:
        """The identity `token` (from `token()`) names on `host`; None when it is not one."""
        parts = token.split(".")
        if len(parts) != 5 or not (parts[3].isdigit() and parts[4].isdigit()):
            return None
        return cls(host, parts[0], parts[1], parts[2], int(parts[3]), int(parts[4]))

    def is_gone(self, here: ProcessIdentity) -> bool | None:
        """Whether this process has died, as seen from `here`: True, False, or None (cannot tell).

        Told only on the same host and machine: in the same boot and pid namespace by its pid
        and start time (a pid reused by another process counts as gone), and after a reboot of
        the same machine always gone. Another machine, container or an unknown machine: None.

        Example:
            >>> here = ProcessIdentity("box", "a1", "b2", "9", 1, 5)
            >>> ProcessIdentity("other", "a1", "b2", "9", 1, 5).is_gone(here) is None
            True
            >>> ProcessIdentity("box", "a1", "old-boot", "9", 1, 5).is_gone(here)  # rebooted since
            True
            >>> ProcessIdentity("box", "a1", "b2", "another-namespace", 1, 5).is_gone(here) is None
            True
        """
        if self.host != here.host or (self.machine and here.machine and self.machine != here.machine):
            return None
        if self.boot != here.boot:
            return True if self.machine and self.machine == here.machine and self.boot and here.boot else None
        if self.pid_namespace != here.pid_namespace:
            return None
        return start_time(self.pid) != self.start


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
