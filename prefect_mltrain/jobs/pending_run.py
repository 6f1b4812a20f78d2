"""A job's MLflow run, created on a thread of its own while the flow gets the job started.

Importing mlflow and opening its store takes seconds; a Python job need not wait for it. The
job gets `MLTRAIN_RUN_ID_FILE` and the bootstrap sitecustomize (on every job's PYTHONPATH)
waits for that file on `import mlflow`. Other commands wait here for the run instead.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prefect_mltrain.system.files import write_atomically

if TYPE_CHECKING:
    from prefect_mltrain.blocks.tracking import MlflowTracking


# Read by prefect_mltrain/bootstrap/sitecustomize.py, which cannot import this package.
RUN_ID_FILE_VARIABLE = "MLTRAIN_RUN_ID_FILE"
AFTER_AT_MOST = 10.0  # seconds `PendingRun.start` waits for its `after` condition

_PYTHON = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
_HARMLESS = {"mkdir", "cd"}  # what run_job_file puts before the command, and a directory change


def starts_before_run(script: str | None, command: str | None) -> bool:
    """Whether a job may start before its MLflow run exists: it is a Python program.

    That is `script=`, or a `command` whose every step (split on `&&` and `;`) is `python ...`,
    `python3 ...` (or `mkdir`, `cd`), with no `$` expansion and no mention of `MLFLOW_`. Any
    other command (a shell line that reads `$MLFLOW_RUN_ID`, the `mlflow` CLI, a shell script,
    pipes or redirections) starts once the run exists, with `MLFLOW_RUN_ID` set.

    >>> starts_before_run("train.py", None), starts_before_run(None, "mkdir -p outputs/m && python train.py --lr 0.1")
    (True, True)
    >>> starts_before_run(None, "python t.py --run $MLFLOW_RUN_ID"), starts_before_run(None, "mlflow runs describe")
    (False, False)
    >>> starts_before_run(None, "python a.py | tee log"), starts_before_run(None, "bash train.sh")
    (False, False)
    """
    if script is not None:
        return True
    if not command or "$" in command or "`" in command or "MLFLOW_" in command:
        return False
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: let the shell report it, the old way
        return False
    steps: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", ";"):
            steps.append([])
        elif set(word) <= set("|&;<>()"):
            return False  # pipes, redirections, background jobs, subshells
        else:
            steps[-1].append(word)
    programs = [step[0] for step in steps if step]
    return any(_PYTHON.match(p) for p in programs) and all(_PYTHON.match(p) or p in _HARMLESS for p in programs)


class PendingRun:
    """The job's MLflow run, made by a background thread; ended by `with` as `start_run` does.

    The thread, from `start`, imports mlflow and makes sure of the experiment; it creates the
    run when `create` hands it the tags (they hold the environment's hash, known later), and
    then writes `{"run_id", "experiment_id"}` to `run_file`. If anything fails it writes the error
    there instead and hands the reason to `on_failure` (which stops a job already started), so
    its `import mlflow` fails at once, and the run (if it was made) ends FAILED. Leaving the `with`
    block ends the run FINISHED, FAILED on error, KILLED on cancel; a run never asked for is
    never created.

    Args:
        tracker: Where the run goes.
        experiment_name: The experiment; the tracking block's when None.
        run_name: Name of the MLflow run.
        run_file: The file a job on this machine reads the run id from.
        on_failure: Called with the reason when the run cannot be made.
    """

    def __init__(
        self,
        tracker: MlflowTracking,
        experiment_name: str | None,
        run_name: str | None,
        run_file: Path,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.tracker = tracker
        self.run_file = run_file
        self.experiment_id: Future[str] = Future()
        self.run_id: Future[str] = Future()
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._on_failure = on_failure
        self._tags: Future[dict[str, str]] = Future()
        self._after: Callable[[], bool] | None = None
        run_file.unlink(missing_ok=True)  # from an earlier attempt of this flow run
        self._thread = threading.Thread(target=self._make, name="mltrain-mlflow-run", daemon=True)

    def start(self, after: Callable[[], bool] | None = None) -> None:
        """Begin making the run, unless that is under way.

        Args:
            after: Polled first, for at most `AFTER_AT_MOST` seconds: the thread begins once it
                says True (e.g. once the job's process is up, which importing mlflow on a
                thread of this process would slow down).
        """
        if self._thread.ident is None:
            self._after = after
            self._thread.start()

    def create(self, tags: dict[str, str]) -> None:
        """Let the run be created, with these tags."""
        self._tags.set_result(tags)

    def _make(self) -> None:
        deadline = time.monotonic() + AFTER_AT_MOST
        while self._after is not None and not self._after() and time.monotonic() < deadline:
            time.sleep(0.01)
        client: Any = None
        run_id = None
        try:
            experiment_id = self.tracker.ensure_experiment(self._experiment_name)
            self.experiment_id.set_result(experiment_id)
            tags = self._tags.result()  # CancelledError: the flow failed before it needed a run
            client = self.tracker.client()
            run_id = client.create_run(experiment_id, run_name=self._run_name, tags=tags).info.run_id
            write_atomically(self.run_file, json.dumps({"run_id": run_id, "experiment_id": experiment_id}))
        except CancelledError:
            self.run_id.cancel()
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the flow through the futures
            self._fail(exc, client, run_id)
            return
        self.run_id.set_result(run_id)

    def _fail(self, exc: BaseException, client: Any, run_id: str | None) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        try:
            with contextlib.suppress(OSError):
                write_atomically(self.run_file, json.dumps({"error": reason}))
            self._on_failure(f"its MLflow run could not be created ({reason})")
            if run_id is not None:
                with contextlib.suppress(Exception):  # the store may be what failed
                    client.set_terminated(run_id, status="FAILED")
        finally:
            if not self.experiment_id.done():
                self.experiment_id.set_exception(exc)
            self.run_id.set_exception(exc)

    def __enter__(self) -> PendingRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self._tags.done():
            self._tags.cancel()  # never asked for: no run is created
        if self._thread.ident is None:
            return
        try:
            run_id = self.run_id.result()
        except (CancelledError, Exception):
            return  # no run, or the thread already ended it FAILED
        status = (
            "FINISHED" if kind is None else "KILLED" if issubclass(kind, (KeyboardInterrupt, SystemExit)) else "FAILED"
        )
        self.tracker.client().set_terminated(run_id, status=status)
