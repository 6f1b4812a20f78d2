"""`system.identity`: a process named so that another process can tell, later, whether it died."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from prefect_mltrain.system.identity import ProcessIdentity, start_time

pytestmark = [pytest.mark.unit, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def _identity_of(pid: int) -> ProcessIdentity:
    here = ProcessIdentity.current()
    assert here is not None
    start = start_time(pid)
    assert start is not None
    return dataclasses.replace(here, pid=pid, start=start)


def test_a_process_is_alive_until_killed_and_gone_after_even_unreaped():
    here = ProcessIdentity.current()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = _identity_of(child.pid)
        assert identity.is_gone(here) is False and here.is_gone(here) is False
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
        assert identity.is_gone(here) is True
    finally:
        child.kill()
        child.wait()
    assert identity.is_gone(here) is True


def test_a_reused_pid_is_not_the_same_process():
    here = ProcessIdentity.current()
    assert dataclasses.replace(here, start=here.start + 1).is_gone(here) is True


def test_what_cannot_be_seen_from_here_is_never_judged():
    here = ProcessIdentity.current()
    elsewhere = [
        dataclasses.replace(here, host=here.host + "-other", pid=999_999_999),
        dataclasses.replace(here, machine="another-machine", pid=999_999_999),
        dataclasses.replace(here, pid_namespace="1", pid=999_999_999),  # another container
    ]
    for identity in elsewhere:
        assert identity.is_gone(here) is None, identity
    if here.machine:  # the same machine since rebooted: whatever ran then is gone
        assert dataclasses.replace(here, boot="old-boot").is_gone(here) is True


def test_the_identity_reads_back_from_its_token():
    here = ProcessIdentity.current()
    assert here is not None and here.pid == os.getpid()
    assert ProcessIdentity.parse(here.host, here.token()) == here
