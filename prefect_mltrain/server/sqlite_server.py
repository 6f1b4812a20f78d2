"""`prefect server start` on SQLite, with write transactions that wait their turn instead of failing.

Prefect's SQLite configuration opens write transactions as `BEGIN DEFERRED`. Such a transaction
reads first and takes the write lock only at its first write; if another connection committed
in between, SQLite answers `database is locked` at once (its busy timeout does not apply to a
stale read snapshot). The server returns 503 and the Prefect client retries after about 2 s.
Two sweep trials that start together (their concurrency slots, their flow runs) hit this on
almost every sweep. Prefect's own comment on the pragma names the cure: begin such transactions
`IMMEDIATE`. They then take the write lock first and queue on the busy timeout (60 s), which is
what SQLite does for every writer anyway. Postgres servers are untouched: only the server that
`prefect_mltrain.server.stack.start_server` starts runs through this module.

    python -m prefect_mltrain.server.sqlite_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

import sys

from prefect_mltrain._compat.prefect_server import begin_writes_immediately


def main() -> int:
    """Run the Prefect CLI (`sys.argv[1:]`) in this process with the SQLite fix applied."""
    begin_writes_immediately()
    from prefect.cli import app

    sys.argv[0] = "prefect"
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
