"""glibc's `mallopt`, set around a training loop that runs inside a Dask worker."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRAINING_MALLOC = {_M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20}
_DASK_MALLOC = {_M_MMAP_THRESHOLD: 128 * 2**10, _M_TRIM_THRESHOLD: 65536}


@contextlib.contextmanager
def training_malloc() -> Iterator[None]:
    """Keep tensor buffers on the heap while training in a Dask worker; Dask's settings after.

    Dask's nanny sets `MALLOC_TRIM_THRESHOLD_` low, so glibc returns every freed tensor buffer
    to the OS and maps it again the next step. Only where that variable is set (a Dask worker)
    and the C library is glibc; elsewhere nothing changes.
    """
    libc = None
    if sys.platform.startswith("linux") and os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (e.g. musl): nothing to tune
            libc = None
    if libc is not None:
        for param, value in _TRAINING_MALLOC.items():
            libc.mallopt(param, value)
    try:
        yield
    finally:
        if libc is not None:
            for param, value in _DASK_MALLOC.items():
                libc.mallopt(param, value)
