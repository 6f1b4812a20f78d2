"""Prefect's SQLite server with write transactions that begin `IMMEDIATE` (see `begin_writes_immediately`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any


def begin_writes_immediately() -> None:
    """Make the SQLite configuration of Prefect's server begin every write transaction `IMMEDIATE`.

    Replaces `AioSqliteConfiguration.begin_transaction` (private) in this process; only
    `python -m prefect_mltrain.server.sqlite_server` calls it, before the server starts.
    """
    from prefect.server.database import configurations

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncGenerator[Any, None]:
        token = configurations.SQLITE_BEGIN_MODE.set("IMMEDIATE")
        try:
            async with session.begin() as transaction:
                yield transaction
        finally:
            configurations.SQLITE_BEGIN_MODE.reset(token)

    configurations.AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
