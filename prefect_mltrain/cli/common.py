"""What every `prefect-mltrain` command shares."""

from __future__ import annotations

from prefect_mltrain.server.stack import ensure_server, use_server


def connect() -> None:
    """Point this process (and what it starts) at the Prefect server: `PREFECT_API_URL`, or the
    embedded one, started if need be."""
    use_server(ensure_server())
