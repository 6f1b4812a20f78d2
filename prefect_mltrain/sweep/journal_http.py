"""A sweep's journal, served over HTTP by the flow, for Dask workers on other machines.

Optuna's `JournalStorage` keeps a study as an append-only log of operations that every process
replays. On one machine the log is a file (`JournalFileBackend`), and every worker appends to it
under a lock. Workers that share no files with the flow reach that same file through this
server, run by the sweep's flow: `JournalHttpBackend` is an Optuna `BaseJournalBackend` whose
`read_logs` and `append_logs` are one HTTP call each, so a worker's `JournalStorage` behaves as it
does on a shared file, and the log stays where a resumed sweep finds it. (Optuna's own gRPC
storage proxy is documented as unsafe with `JournalStorage`: optuna/optuna#6084.)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prefect_mltrain.sweep.journal import file_backend, import_optuna
from prefect_mltrain.system.net import address_towards


class JournalServer:
    """Serve the journal file `path` on `host` (a free port), with a random token in the URL.

    Use as a context manager; `url` is what workers open (`journal_storage(url)`).
    """

    def __init__(self, path: str, host: str) -> None:
        backend = file_backend(path)
        token = secrets.token_urlsafe(16)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                if url.path != f"/{token}":
                    return self.send_error(404)
                start = int(parse_qs(url.query).get("from", ["0"])[0])
                self._reply(200, json.dumps(list(backend.read_logs(start))).encode())

            def do_POST(self) -> None:  # noqa: N802
                if self.path != f"/{token}":
                    return self.send_error(404)
                logs = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                backend.append_logs(logs)
                self._reply(204, b"")

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: one line per call
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/{token}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="mltrain-journal", daemon=True)

    def __enter__(self) -> JournalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def http_backend(url: str) -> Any:
    """An Optuna journal backend on a `JournalServer`'s `url`."""
    import httpx

    import_optuna()
    from optuna.storages.journal import BaseJournalBackend

    class JournalHttpBackend(BaseJournalBackend):
        def __init__(self) -> None:
            self._client = httpx.Client(timeout=60)

        def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
            response = self._client.get(url, params={"from": log_number_from})
            response.raise_for_status()
            return list(response.json())

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            self._client.post(url, content=json.dumps(logs)).raise_for_status()

    return JournalHttpBackend()


@contextlib.contextmanager
def journal_for_workers(path: str, scheduler_address: str, remote: bool) -> Iterator[str]:
    """Where the workers open the study: the journal file, or (`remote`) a server of it for them.

    The server listens on this machine's address towards the Dask scheduler, which is where
    workers that reach the scheduler reach this machine; it stops when the trials are done.
    """
    if not remote:
        yield path
        return
    scheduler = urlparse(scheduler_address)
    with JournalServer(path, address_towards(scheduler.hostname or "127.0.0.1", scheduler.port or 8786)) as server:
        yield server.url
