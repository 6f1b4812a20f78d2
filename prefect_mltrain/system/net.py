"""Network helpers shared by the embedded servers, distributed jobs and model serving."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` now (`""`: on every interface of this machine)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def address_towards(host: str, port: int) -> str:
    """This machine's address on the interface that reaches `host:port` (where its peers reach us).

    >>> address_towards("127.0.0.1", 8786)
    '127.0.0.1'
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))  # UDP: picks the route, sends nothing
        return str(sock.getsockname()[0])
