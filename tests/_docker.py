"""Shared helpers of the Docker tests: skip without an engine, read flow-run logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from uuid import UUID

import pytest

BASE_IMAGE = os.environ.get("PREFECT_MLTRAIN_BASE_IMAGE", "prefect-mltrain-base:bookworm")


def _engine_status() -> str | None:
    """None when the engine and base image are ready, else why the Docker tests skip."""
    if shutil.which("docker") is None:
        return "no `docker` CLI; run `bash .ci/docker-setup.sh` to install and start Docker"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "docker-py is missing: pip install -e '.[docker]'"
    info = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, text=True)
    if info.returncode != 0:
        if "daemon" in info.stderr.lower() or "connect" in info.stderr.lower():
            return "no Docker engine is running; start one with `bash .ci/docker-setup.sh`"
        return f"base image {BASE_IMAGE} is missing; make it with `bash .ci/docker-setup.sh`"
    return None


_REASON = _engine_status()
requires_docker = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def flow_run_log_text(flow_run_id: UUID, must_contain: str | None = None, wait: float = 20.0) -> str:
    """All log messages of a flow run (its task runs included), waiting for `must_contain`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while True:
            messages: list[str] = []
            while True:
                page = client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                    limit=200,
                    offset=len(messages),
                )
                messages += [log.message for log in page]
                if len(page) < 200:
                    break
            text = "\n".join(messages)
            if must_contain is None or must_contain in text or time.monotonic() > deadline:
                return text
            time.sleep(0.5)


def containers_named(prefix: str) -> list[str]:
    """Names of containers (running or not) whose name starts with `prefix`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [n for n in out.stdout.split() if n.startswith(prefix)]
