"""The SQLite Prefect server that `stack.start_server` runs: concurrent writers queue, none fails."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx


def test_concurrent_writes_are_served_not_refused_with_503(unique_name: str) -> None:
    """Sweep slots take concurrency slots and create flow runs at the same moment.

    On Prefect's stock SQLite server some of these read-then-write transactions fail with
    `database is locked`, a 503 that the Prefect client retries after about 2 s.
    """
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    with httpx.Client(base_url=api, timeout=60) as client:
        created = client.post("/v2/concurrency_limits/", json={"name": unique_name, "limit": 10_000})
        assert created.status_code == 201, created.text

    def acquire_and_release(_: int) -> list[int | str]:
        codes: list[int | str] = []
        with httpx.Client(base_url=api, timeout=60) as client:  # no retries: a 503 is seen as it is
            for _ in range(15):
                try:
                    taken = client.post(
                        "/v2/concurrency_limits/increment-with-lease",
                        json={"names": [unique_name], "slots": 1, "lease_duration": 60},
                    )
                    codes.append(taken.status_code)
                    if taken.status_code == 200:
                        released = client.post(
                            "/v2/concurrency_limits/decrement-with-lease", json={"lease_id": taken.json()["lease_id"]}
                        )
                        codes.append(released.status_code)
                except httpx.TransportError as exc:  # the stock server also drops connections
                    codes.append(type(exc).__name__)
        return codes

    with ThreadPoolExecutor(8) as pool:
        codes = [code for batch in pool.map(acquire_and_release, range(8)) for code in batch]
    assert 503 not in codes, f"{codes.count(503)} of {len(codes)} requests were refused with 503"
    assert set(codes) <= {200, 204}, sorted(map(str, set(codes)))


def test_the_server_module_runs_the_prefect_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect_mltrain.server.sqlite_server", "server", "start", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout
