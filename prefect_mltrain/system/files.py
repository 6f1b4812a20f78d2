"""Files several processes share: an exclusive lock between them, and writes they see whole or not at all."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (concurrent builds, downloads or starts wait here).

    The file goes when its holder is done, unless another process already waits on it (a link
    count check after taking the lock tells a file that was removed meanwhile: then lock again),
    so no empty lock files are left behind.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below, after the unlock
        fcntl.flock(handle, fcntl.LOCK_EX)
        if os.fstat(handle.fileno()).st_nlink:  # still the file at that path: ours
            break
        handle.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def write_atomically(path: Path, content: str) -> None:
    """Write `path` so that readers see nothing or all of it (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)
