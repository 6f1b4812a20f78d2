"""What one trial runs: a small interface that any trainer plugs into.

A `TrialSpec` gets the trial's hyperparameters and a `TrialContext`, trains, reports
intermediate values with `context.report(...)` (where the early-termination policy may stop
it) and returns its final metrics. Built-ins:

- `FunctionTrial`: your function or Prefect flow, `fn(params)` or `fn(params, context)`.
- `SklearnTrial`: the built-in scikit-learn fit (as in `train_sklearn`).
- `CommandTrial`: a command job (as in `train_job`) with `${{search_space.x}}` placeholders.

A PyTorch trainer plugs in the same way: subclass `TrialSpec`, train in `run`, call
`context.report({"val_loss": ...}, step=epoch)` each epoch, and log the model to
`context.mlflow_run_id` under `model_artifact` so the best trial can be registered.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from prefect_mltrain.compute.devices import cuda_env
from prefect_mltrain.errors import ConfigurationError, JobFailedError
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.system.imports import import_from_path
from prefect_mltrain.tracking.client import mlflow_client


class TrialStopped(Exception):
    """Raised by `TrialContext.report` when the trial must stop; carries the reason."""

    def __init__(self, reason: str, step: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


class TrialContext:
    """What a running trial can see and do: its number, params, MLflow run, GPUs, and `report`."""

    def __init__(
        self,
        number: int,
        params: dict[str, Any],
        primary_metric: str,
        mlflow_run_id: str | None = None,
        mlflow_env: dict[str, str] | None = None,
        gpu_ids: list[str] | None = None,
        on_report: Callable[[dict[str, float], int], None] | None = None,
        on_observe: Callable[[dict[str, float], int], None] | None = None,
    ) -> None:
        self.number = number
        self.params = params
        self.primary_metric = primary_metric
        self.mlflow_run_id = mlflow_run_id
        self.mlflow_env = dict(mlflow_env or {})
        self.gpu_ids = list(gpu_ids or [])
        self._on_report = on_report
        self._on_observe = on_observe or on_report
        self._step = 0
        self.reported: dict[str, float] = {}

    def report(self, metrics: Mapping[str, float] | float, step: int | None = None) -> None:
        """Report intermediate metrics of this trial at `step` (1, 2, ... when not given).

        A bare number is the primary metric. The values are logged to the trial's MLflow run
        and, when they include the primary metric, given to the early-termination policy.

        Raises:
            TrialStopped: The policy (or the sweep's timeout) stopped the trial. Let it
                propagate: the trial then ends in the `Pruned` state with the reason.
        """
        values = (
            {self.primary_metric: float(metrics)}
            if isinstance(metrics, (int, float))
            else {str(k): float(v) for k, v in metrics.items()}
        )
        self._step = int(step) if step is not None else self._step + 1
        self.reported.update(values)
        if self._on_report is not None:
            self._on_report(values, self._step)

    def observe(self, metrics: Mapping[str, float], step: int) -> None:
        """Like `report`, for values the trial's own code already logged to its MLflow run.

        They go to the early-termination policy only: logging them again would add a second
        point per step to the run's metric history (a command trial's script logs its own).
        """
        values = {str(k): float(v) for k, v in metrics.items()}
        self._step = int(step)
        self.reported.update(values)
        if self._on_observe is not None:
            self._on_observe(values, self._step)


class TrialSpec(ABC):
    """One trial's training. Subclasses are plain, picklable stores of their configuration."""

    type: ClassVar[str]
    #: Artifact path in the trial's MLflow run that holds the model (for registering the best).
    model_artifact: str | None = None
    framework: str = "unknown"
    #: The trial's own code logs its metrics to its MLflow run (the sweep must not log them again).
    logs_own_metrics: ClassVar[bool] = False

    def check(self, space: SearchSpace) -> None:
        """Raise `ConfigurationError` when the trial cannot use `space` (before compute starts)."""

    def with_blocks(self, resolve: Callable[[str, Any], Any]) -> TrialSpec:
        """This trial with every saved-block reference loaded: `resolve(field, value)` loads one.

        The sweep flow calls it before `check`, so trials on the workers hold the blocks
        themselves and this package's concept layers never load blocks.
        """
        return self

    @abstractmethod
    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        """Train with `params`; return the final metrics."""

    def describe(self) -> str:
        """One line that says what the trial runs."""
        return self.type


@dataclass
class FunctionTrial(TrialSpec):
    """Your function or Prefect flow: `fn(params)` or `fn(params, context)` returning metrics.

    A Prefect flow runs its body (`flow.fn`) as the trial's flow run. A returned number is the
    primary metric. Set `model_artifact` if the function logs a model to
    `context.mlflow_run_id` and the best one should be registrable.
    """

    fn: Callable[..., Any]
    model_artifact: str | None = None
    framework: str = "unknown"
    type: ClassVar[str] = "function"

    def _callable(self) -> Callable[..., Any]:
        return getattr(self.fn, "fn", self.fn)  # a prefect Flow's body

    def check(self, space: SearchSpace) -> None:
        fn = self._callable()
        if not callable(fn):
            raise ConfigurationError(f"`trial` must be callable, but got {self.fn!r}.")
        try:
            positional = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            ]
        except (TypeError, ValueError):
            return
        if not positional:
            raise ConfigurationError(
                f"`trial` {getattr(fn, '__name__', fn)!r} must take the params dict as its first "
                f"argument, e.g. `def trial(params, context): ...`, but it takes none."
            )

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        fn = self._callable()
        try:
            takes_context = (
                len(
                    [
                        p
                        for p in inspect.signature(fn).parameters.values()
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    ]
                )
                >= 2
            )
        except (TypeError, ValueError):
            takes_context = False
        out = fn(params, context) if takes_context else fn(params)
        if isinstance(out, (int, float)) and not isinstance(out, bool):
            return {context.primary_metric: float(out)}
        if out is None:
            return dict(context.reported)
        if not isinstance(out, Mapping):
            raise ConfigurationError(
                f"A trial function must return a dict of metrics or a number, but "
                f"{getattr(fn, '__name__', fn)!r} returned {type(out).__name__}: {out!r}."
            )
        return {str(k): float(v) for k, v in out.items()}

    def describe(self) -> str:
        fn = self._callable()
        return f"function {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


@dataclass
class SklearnTrial(TrialSpec):
    """The built-in scikit-learn fit: the search space names the estimator's parameters."""

    estimator: str = "sklearn.linear_model.LogisticRegression"
    dataset: str = "iris"
    params: dict[str, Any] = field(default_factory=dict)
    target_column: str | None = None
    test_size: float = 0.25
    random_state: int = 0
    log_model: bool = False
    type: ClassVar[str] = "sklearn"
    framework: str = "sklearn"

    @property
    def model_artifact(self) -> str | None:  # type: ignore[override]
        return "model" if self.log_model else None

    def check(self, space: SearchSpace) -> None:
        from prefect_mltrain.estimators.sklearn import BUNDLED_DATASETS, load_dataset, make_estimator

        model = make_estimator(self.estimator, self.params)
        unknown = sorted(set(space) - set(model.get_params()))
        if unknown:
            raise ConfigurationError(
                f"`search_space` has {unknown}, which {self.estimator} does not take. Valid: "
                f"{sorted(model.get_params())}."
            )
        if not 0 < self.test_size < 1:
            raise ConfigurationError(f"`test_size` must lie in (0, 1), but got test_size={self.test_size!r}.")
        if self.dataset not in BUNDLED_DATASETS:
            load_dataset(self.dataset, self.target_column)

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        from sklearn.base import is_classifier
        from sklearn.model_selection import train_test_split

        from prefect_mltrain.estimators.sklearn import load_dataset, make_estimator, score

        data = load_dataset(self.dataset, self.target_column)
        model = make_estimator(self.estimator, {**self.params, **params})
        stratify = data.y if is_classifier(model) else None
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=self.test_size, random_state=self.random_state, stratify=stratify
        )
        started = time.perf_counter()
        model.fit(X_train, y_train)
        metrics = {**score(model, X_test, y_test), "fit_seconds": time.perf_counter() - started}
        if self.log_model and context.mlflow_run_id:
            import mlflow.sklearn

            client = mlflow_client(tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"))
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.sklearn.save_model(model, Path(tmp) / "model")
                client.log_artifacts(context.mlflow_run_id, str(Path(tmp) / "model"), "model")
        return metrics

    def describe(self) -> str:
        return f"sklearn {self.estimator} on {self.dataset}"


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

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:

        from prefect_mltrain.environments.build import build
        from prefect_mltrain.jobs import launch
        from prefect_mltrain.jobs.containers import local_store_paths
        from prefect_mltrain.jobs.snapshot import snapshot_source
        from prefect_mltrain.settings import MltrainSettings

        logger = _trial_logger()
        settings = MltrainSettings()
        environment = self._environment()
        built = build(environment)
        workdir = Path(
            snapshot_source(
                Path(self.source_directory).expanduser().resolve(),
                settings.runs_dir / "trials" / (context.mlflow_run_id or uuid.uuid4().hex),
                settings.snapshot_max_mb,
            ).path
        )
        (workdir / "outputs").mkdir(exist_ok=True)
        client = mlflow_client(tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"))
        run_id = context.mlflow_run_id or ""
        artifacts = client.get_run(run_id).info.artifact_uri if run_id else None
        env = {
            **environment.job_environment(),
            **self.environment_variables,
            **context.mlflow_env,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": launch.job_pythonpath(environment.job_environment()),
        }
        env |= cuda_env(list(context.gpu_ids)) if context.gpu_ids and not built.image else {}
        mounts = local_store_paths({**os.environ, **env}, artifacts) if built.image else []
        env, container = launch.in_environment(built, env, mounts, len(context.gpu_ids))
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

        try:
            result = launch.run(
                self.argv(params, built.python), workdir, env, on_line, container=container, should_stop=poll
            )
        finally:
            if run_id and any((workdir / "outputs").iterdir()):
                client.log_artifacts(run_id, str(workdir / "outputs"), "outputs")
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
    import logging

    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # no run context: a trial called directly
        return logging.getLogger("prefect_mltrain.sweep.trial")


# TrainConfig fields a search space may tune for a PyTorch trial.
PYTORCH_TUNABLE = (
    "batch_size",
    "epochs",
    "image_size",
    "learning_rate",
    "model",
    "patience",
    "random_seed",
    "warmup_steps",
)


@dataclass
class PytorchTrial(TrialSpec):
    """The PyTorch image classifier (`train_pytorch_model`'s training), one process per trial.

    The search space names training parameters (`learning_rate`, `batch_size`, `model`, ...);
    `fixed` sets the others. Every epoch's validation metrics (`val_loss`, `top1_accuracy`,
    ...) are reported, so early termination stops laggards between epochs. The trial trains
    in its Dask worker itself: `train_pytorch_model` would start a Dask runner of its own there.
    """

    training_data: str
    validation_data: str
    model: str = "resnet18"
    fixed: dict[str, Any] = field(default_factory=dict)
    type: ClassVar[str] = "pytorch"
    framework: str = "torchvision"

    def check(self, space: SearchSpace) -> None:
        from prefect_mltrain.pytorch.data import check_architecture, check_same_classes, scan_image_directory

        unknown = sorted((set(space) | set(self.fixed)) - set(PYTORCH_TUNABLE))
        if unknown:
            raise ConfigurationError(f"A PyTorch trial cannot tune or fix {unknown}; valid: {list(PYTORCH_TUNABLE)}.")
        check_architecture(self.fixed.get("model", self.model))
        check_same_classes(
            scan_image_directory(self.training_data, "training_data"),
            scan_image_directory(self.validation_data, "validation_data"),
        )

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        from prefect_mltrain.pytorch.data import scan_image_directory
        from prefect_mltrain.pytorch.train import TrainConfig, train_process

        train_dir = scan_image_directory(self.training_data, "training_data")
        valid_dir = scan_image_directory(self.validation_data, "validation_data")
        settings = {"model": self.model, **self.fixed, **params}
        with tempfile.TemporaryDirectory(prefix=f"trial-{context.number}-") as checkpoints:
            config = TrainConfig(
                training_data=train_dir.path,
                validation_data=valid_dir.path,
                classes=train_dir.classes,
                checkpoint_dir=checkpoints,
                tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"),
                **settings,
            )

            def report(epoch: int, metrics: dict[str, float]) -> bool:
                context.report(metrics, step=epoch)  # raises TrialStopped when the policy says so
                return False

            result = train_process(config, report=report)
        return dict(result["history"][-1])

    def describe(self) -> str:
        return f"pytorch {self.fixed.get('model', self.model)} on {self.training_data}"


TRIALS: dict[str, type[TrialSpec]] = {c.type: c for c in (CommandTrial, FunctionTrial, PytorchTrial, SklearnTrial)}


def trial_spec(value: Any) -> TrialSpec:
    """Resolve `trial`: a `TrialSpec`, a function or Prefect flow, or a dict (for deployments).

    Dicts: `{"type": "sklearn", "estimator": ..., "dataset": ...}`, `{"type": "pytorch",
    "training_data": ..., "validation_data": ...}`, `{"type": "command",
    "command": ..., "source_directory": ...}`, or `{"type": "function", "entrypoint":
    "package.module:function"}`.

    Raises:
        ConfigurationError: The value is none of those; the valid types are listed.
    """
    if isinstance(value, TrialSpec):
        return value
    if isinstance(value, Mapping):
        kind = value.get("type")
        args = {k: v for k, v in value.items() if k != "type"}
        if kind == "function":
            entry = str(args.pop("entrypoint", ""))
            try:
                fn = import_from_path(entry)
            except (ImportError, AttributeError, ValueError):
                raise ConfigurationError(
                    f"`trial.entrypoint`={entry!r} cannot be imported. Fix: give 'package.module:function'."
                ) from None
            return FunctionTrial(fn, **args)
        if kind not in TRIALS:
            raise ConfigurationError(f"`trial`: unknown type {kind!r}. Valid types: {sorted(TRIALS)}.")
        try:
            return TRIALS[kind](**args)
        except TypeError as exc:
            raise ConfigurationError(f"`trial`: {kind} does not take {sorted(args)} ({exc}).") from None
    if callable(value):
        return FunctionTrial(value)
    raise ConfigurationError(
        f"`trial` must be a TrialSpec, a function, a Prefect flow or a dict with a `type` of "
        f"{sorted(TRIALS)}, but got {type(value).__name__}: {value!r}."
    )
