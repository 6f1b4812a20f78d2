"""A slot's hold on the sweep's Prefect global concurrency limit: a lease it renews, and its release.

Prefect's `concurrency()` hides its lease. A slot holds its own (`Lease`) and tells the sweep
its id, so that the sweep can release it the moment the slot's worker dies (`release_lease`)
instead of the slot standing taken until the lease lapses; a resumed sweep makes its limit
afresh (`reset_concurrency_limit`), freeing whatever a killed run of it held.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

LEASE_SECONDS = 60.0
"""A slot's concurrency lease lasts this long unless renewed (every third of it; Prefect's
shortest lease): should the sweep process itself die, its slots' leases lapse within this time.
A worker's death frees its lease at once: the sweep releases it (`sweep.watch.Watch`)."""


class Lease:
    """One slot of the sweep's Prefect global concurrency limit, held with a lease that a thread renews.

    `tell` hears the lease's id (`{"kind": "lease"}`) when it is taken and `{"kind": "released"}`
    when it is given back.
    """

    def __init__(self, client: Any, limit: str, tell: Callable[[dict[str, Any]], None]) -> None:
        self.client, self.limit, self.tell = client, limit, tell
        self.lease_id: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        import httpx

        while True:
            try:
                response = self.client.increment_concurrency_slots_with_lease(
                    [self.limit], 1, "concurrency", LEASE_SECONDS
                )
                break
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 423:
                    raise
                time.sleep(min(float(exc.response.headers.get("Retry-After", 0.5)), 1.0))
        self.lease_id = response.json()["lease_id"]
        self.tell({"kind": "lease", "lease": str(self.lease_id)})
        self._thread = threading.Thread(target=self._renew, name="mltrain-slot-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # its own: httpx clients are not shared across threads here
            while not self._stop.wait(LEASE_SECONDS / 3):
                with contextlib.suppress(Exception):  # a missed renewal is retried; the lease lasts 3 of them
                    client.renew_concurrency_lease(self.lease_id, LEASE_SECONDS)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):  # already released by the sweep, or lapsed
            self.client.release_concurrency_slots_with_lease(self.lease_id)
        self.tell({"kind": "released", "lease": str(self.lease_id)})


def release_lease(lease_id: str) -> None:
    """Release a concurrency lease whose holder died (best effort: it lapses within `LEASE_SECONDS` anyway)."""
    from prefect.client.orchestration import get_client

    with contextlib.suppress(Exception), get_client(sync_client=True) as client:
        client.release_concurrency_slots_with_lease(uuid.UUID(lease_id))


def reset_concurrency_limit(name: str, limit: int) -> None:
    """The sweep's global concurrency limit, made afresh with no slot taken.

    The sweep holds its name's lock, so a slot still taken belongs to a process that died (a
    crashed run of this sweep): deleting the limit frees it at once, where its lease would hold
    it up to `LEASE_SECONDS` (Prefect's own default: 300 s).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(name)
        client.upsert_global_concurrency_limit_by_name(name, limit)
