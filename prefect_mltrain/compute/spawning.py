"""Start local worker processes without running the user's script again in each of them.

Python's `spawn` (and `forkserver`) start method runs the parent's `__main__` module again in
every child, as `__mp_main__`, so that its functions can be unpickled there. A plain script
that calls a sweep at its top level, without an `if __name__ == "__main__":` guard, would
start another sweep in every Dask worker of its local cluster. Dask pickles functions and
classes of `__main__` by value (cloudpickle), so the workers do not need the script: while
they start, `__main__` is made to look like an interactive session's (no `__file__`, no
`__spec__`), which multiprocessing does not re-run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

_MISSING = object()


@contextmanager
def main_not_rerun() -> Iterator[None]:
    """Within it, processes started by `multiprocessing` do not run the parent's `__main__`.

    >>> import sys
    >>> with main_not_rerun():
    ...     hasattr(sys.modules["__main__"], "__file__")
    False
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: getattr(main, name, _MISSING) for name in ("__file__", "__spec__")}
    if saved["__file__"] is not _MISSING:
        del main.__file__
    main.__spec__ = None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                if hasattr(main, name) and name == "__file__":
                    delattr(main, name)
            else:
                setattr(main, name, value)
