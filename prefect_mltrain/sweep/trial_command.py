"""`CommandTrial`: a command job (as in `train_job`) per trial, `${{search_space.x}}` filled in."""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from prefect_mltrain.compute.devices import cuda_env
from prefect_mltrain.errors import ConfigurationError, JobFailedError
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.trial_base import TrialContext, TrialSpec
from prefect_mltrain.tracking.client import mlflow_client
from prefect_mltrain.tracking.links import run_logger

_PLACEHOLDER = re.compile(r"\$\{\{\s*search_space\.([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


def substitute(text: str, params: Mapping[str, Any]) -> str:
    """Replace Azure's `${{search_space.x}}` placeholders with the trial's values.

    >>> substitute("--lr ${{search_space.lr}}", {"lr": 0.1})
    '--lr 0.1'
    """
    return _PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), text)


@dataclass
class CommandTrial(TrialSpec):
    """A command job per trial: `command` or `python script` with `arguments`, placeholders filled in.

    Each trial runs in a copy of `source_directory` of its own (so trials running at once do
    not share `./outputs`), in `environment` when given (a `TrainingEnvironment`, a saved
    one's name or its fields: a venv/conda environment, or a Docker image the command runs
    in; built once and reused by content hash), with `MLFLOW_TRACKING_URI`/`MLFLOW_RUN_ID`
    of the trial's child run, so `mlflow.log_metric(...)` in the script lands there. Its
    output streams into the trial's flow run logs. While it runs, new values of the primary
    metric are read back every `poll_seconds` and given to the early-termination policy; a
    stopped trial's process group is killed. `./outputs` becomes the run's artifacts, so a
    `model_path` under it can be registered for the best trial.
    """

    command: str | None = None
    script: str | None = None
    arguments: list[Any] = field(default_factory=list)
    source_directory: str = "."
    environment: Any = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    model_path: str | None = None
    poll_seconds: float = 1.0
    #: The packed source directory; set by the sweep flow (`for_workers`), not by users.
    snapshot: Any = None
    type: ClassVar[str] = "command"
    logs_own_metrics: ClassVar[bool] = True
    framework: str = "unknown"

    @property
    def model_artifact(self) -> str | None:  # type: ignore[override]
        return self.model_path

    def _texts(self) -> list[str]:
        return [t for t in [self.command, self.script, *map(str, self.arguments)] if t]

    def with_blocks(self, resolve: Callable[[str, Any], Any]) -> CommandTrial:
        return replace(self, environment=resolve("environment", self.environment))

    def _environment(self) -> Any:
        if not hasattr(self.environment, "spec"):
            raise ConfigurationError(
                f"CommandTrial.environment={self.environment!r} has not been loaded as a TrainingEnvironment. "
                f"Fix: run the trial through the `sweep` flow, or call `trial.with_blocks(...)` first."
            )
        return self.environment

    def check(self, space: SearchSpace) -> None:
        if (self.command is None) == (self.script is None):
            raise ConfigurationError(
                "A command trial takes exactly one of `command` or `script`, but got "
                f"command={self.command!r}, script={self.script!r}."
            )
        if not Path(self.source_directory).expanduser().is_dir():
            raise ConfigurationError(
                f"`source_directory`={self.source_directory!r} is not a directory. Fix: give the "
                f"folder that holds your training script."
            )
        if self.model_path is not None and not Path(self.model_path).as_posix().startswith("outputs/"):
            raise ConfigurationError(
                f"`model_path`={self.model_path!r} must lie under ./outputs (only outputs are kept as "
                f"the trial's artifacts). Fix: save the model as e.g. 'outputs/model.joblib'."
            )
        self._environment().spec()  # a spec that does not parse fails here, before any trial starts
        used = {m for t in self._texts() for m in _PLACEHOLDER.findall(t)}
        missing = sorted(used - set(space))
        if missing:
            raise ConfigurationError(
                f"The command refers to ${{{{search_space.<name>}}}} for {missing}, which the search "
                f"space does not define (it has {sorted(space)}). Fix: add them or correct the names."
            )
        unused = sorted(set(space) - used)
        if unused:
            raise ConfigurationError(
                f"The search space has {unused}, but the command never uses them, so every trial "
                f"would ignore them. Fix: pass them, e.g. `--{unused[0]} ${{{{search_space.{unused[0]}}}}}`."
            )

    def argv(self, params: Mapping[str, Any], python: str | None = None) -> list[str]:
        """The command line of a trial with `params` (`script` runs with `python`, this Python by default)."""
        import shlex

        args = [substitute(str(a), params) for a in self.arguments]
        if self.script is not None:
            return [python or sys.executable, substitute(self.script, params), *args]
        return ["/bin/sh", "-c", " ".join([substitute(self.command or "", params), *map(shlex.quote, args)])]

    def for_workers(self, tracker: Any, run_id: str, remote: bool) -> CommandTrial:
        from prefect_mltrain.jobs.snapshot import archive_path, pack_source
        from prefect_mltrain.settings import MltrainSettings

        source = Path(self.source_directory).expanduser().resolve()
        snapshot = pack_source(source, MltrainSettings().snapshot_max_mb)
        if remote:
            tracker.client().log_artifact(run_id, str(archive_path(snapshot.fingerprint)), "snapshot")
            snapshot = replace(snapshot, artifact_uri=f"runs:/{run_id}/snapshot/{snapshot.fingerprint}.tar.gz")
        return replace(self, snapshot=snapshot, environment=self._environment().portable())

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        from prefect_mltrain.jobs.execute import JobProcess, execute
        from prefect_mltrain.jobs.snapshot import pack_source
        from prefect_mltrain.settings import MltrainSettings

        logger = _trial_logger()
        environment = self._environment()
        # Packed by the sweep flow (`for_workers`); run on its own, the trial packs on this machine.
        snapshot = self.snapshot or pack_source(
            Path(self.source_directory).expanduser().resolve(), MltrainSettings().snapshot_max_mb
        )
        client = mlflow_client(tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"))
        run_id = context.mlflow_run_id or ""
        env = {**environment.job_environment(), **self.environment_variables, **context.mlflow_env}
        env |= cuda_env(list(context.gpu_ids)) if context.gpu_ids and not environment.is_container else {}
        key = run_id or uuid.uuid4().hex
        process = JobProcess(
            key=key,
            argv=self.argv(params, "python"),
            script=self.script is not None,
            env=env,
            environment=environment,
            snapshot=snapshot,
            gpus=len(context.gpu_ids),
            run_folder=f"trials/{key}",  # each trial its own copy: trials at once share no ./outputs
        )
        observed: set[int] = set()
        next_poll = 0.0

        def poll() -> bool:  # new values of the primary metric go to the policy; TrialStopped kills the process
            nonlocal next_poll
            if not run_id or time.monotonic() < next_poll:
                return False
            next_poll = time.monotonic() + self.poll_seconds
            latest: dict[int, float] = {}  # the newest value at each step
            for m in sorted(client.get_metric_history(run_id, context.primary_metric), key=lambda m: m.timestamp):
                latest[int(m.step)] = float(m.value)
            for step in sorted(set(latest) - observed):
                observed.add(step)
                context.observe({context.primary_metric: latest[step]}, step=step)
            return False

        def on_line(stream: str, line: str) -> None:
            (logger.info if stream == "stdout" else logger.warning)("%s", line)

        result = execute(process, on_line, should_stop=poll).result
        if result.exit_code != 0:
            raise JobFailedError(
                f"The trial's command exited with code {result.exit_code}. Last output:\n{result.output_tail}",
                exit_code=result.exit_code,
                stderr_tail=result.stderr_tail,
            )
        if not run_id:
            return dict(context.reported)
        next_poll = 0.0
        poll()  # the values logged after the last poll still reach the policy's record
        return dict(client.get_run(run_id).data.metrics)

    def describe(self) -> str:
        return f"command {' '.join(self._texts())}"


def _trial_logger() -> Any:
    """The trial flow run's logger (its lines show in the Prefect UI), or a plain one outside a run."""
    return run_logger("prefect_mltrain.sweep.trial")
