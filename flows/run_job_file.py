"""`run_job_file`: run an Azure ML CLI v2 job file (`az ml job create --file job.yml`) here."""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.logging import get_run_logger
from pydantic import ValidationError

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.environments.build import _conda_executable, _pip_plan, find_python
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.flows.sweep import SweepResult, check_sweep, study_path, sweep
from prefect_mltrain.flows.train_job import JobResult, _check_job, train_job
from prefect_mltrain.jobs.job_inputs import staged_inputs
from prefect_mltrain.jobs.jobfile import Findings, JobFile, read_job_file, render_command
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.sweep.config import Limits
from prefect_mltrain.sweep.plan import plan_sweep
from prefect_mltrain.tracking.links import flow_run_info

#: `load_block(value, block_class, parameter)`: a saved block by name (`blocks._load.resolve_block`).
BlockLoader = Callable[[Any, type[Any], str], Any]


def job_environment(job: JobFile) -> TrainingEnvironment | str | None:
    """The job file's environment as a TrainingEnvironment (or a saved block's name)."""
    fields = dict(job.environment)
    if not fields:
        return None
    if "block" in fields:
        block = resolve_block(fields.pop("block"), TrainingEnvironment, "environment.block")
        extra = fields.get("environment_variables") or {}
        return block.model_copy(update={"environment_variables": {**block.environment_variables, **extra}})
    return TrainingEnvironment(**fields)


# Azure ML's `limits` keys that `Limits` spells differently.
_LIMIT_NAMES = {"timeout": "timeout_seconds", "trial_timeout": "trial_timeout_seconds"}


def sweep_name(job: JobFile, resume: bool) -> str:
    """The sweep a sweep job file runs as: always a new one, unless `resume` names an existing one.

    As `az ml job create`: without `name:` every submission is a new job with a generated name
    (`<display_name or file stem>-<8 hex>`); an explicit `name:` that exists is refused, and
    continued only with `resume`.
    """
    if job.name is None:
        if resume:
            raise ConfigurationError(
                f"`resume` needs the name of the sweep to continue, but {job.path.name} has no `name:`. "
                f"Fix: add `name: <sweep name>` (printed when it ran) or pass `--set name=<sweep name>`."
            )
        stem = re.sub(r"[^a-z0-9]+", "-", (job.display_name or job.path.stem).lower()).strip("-") or "sweep"
        return f"{stem}-{uuid.uuid4().hex[:8]}"
    exists = study_path(MltrainSettings().home_dir, job.name).exists()
    if exists and not resume:
        raise ConfigurationError(
            f"A sweep named {job.name!r} already exists, and `name:` in {job.path.name} names it again. As with "
            f"`az ml job create`, a job name is used once. Fix: `--resume` to continue that sweep (its finished "
            f"trials are not run again), or another `name:` (or none, for a generated one)."
        )
    if resume and not exists:
        raise ConfigurationError(
            f"`resume` was asked for, but there is no sweep named {job.name!r} to continue. Fix: check the "
            f"name (`prefect-mltrain job run` printed it), or drop `--resume` to start it."
        )
    return job.name


def _run_sweep(job: JobFile, command: str, resume: bool = False, code: str | None = None) -> SweepResult:
    """A `type: sweep` job file as a `sweep` whose trials run the (rendered) trial command."""
    spec = job.sweep or {}
    return sweep(
        trial=_trial(job, command, job_environment(job), code),
        search_space=spec.get("search_space") or {},
        objective=spec.get("objective"),
        sampling_algorithm=spec.get("sampling_algorithm") or "random",
        limits=_limits(spec),
        early_termination=spec.get("early_termination"),
        name=sweep_name(job, resume),
        compute=job.compute,
        experiment_name=job.experiment_name,
    )


def check_job_file(
    path: str | Path,
    overrides: list[str] | None = None,
    resume: bool = False,
    load_block: BlockLoader | None = resolve_block,
) -> JobFile:
    """Check a whole job file before anything starts; raise one error listing every problem.

    The schema and values (`jobs.jobfile`), the environment (it parses, its files exist, the
    requested Python exists on this machine, its Docker image is there), the command job's
    shape (`train_job`'s checks), distribution, and a sweep's objective, search space (each
    entry), sampling algorithm, early termination and limits (`sweep.plan.plan_sweep`, part
    by part, then as a whole) and name. Nothing is built, started or run.

    Args:
        path: The job file.
        overrides: `key.sub=value` items, as with `az ml job create --set`.
        resume: Whether the sweep the file's `name:` names is to be continued.
        load_block: Loads the saved blocks the file names (`compute:`, `environment: {block:}`);
            None leaves them unchecked (no Prefect server to ask yet).

    Raises:
        JobFileError: Every problem, each with where it is in the file and the fix.
    """
    job, findings = read_job_file(path, overrides)
    with findings.checking(job.key("environment")):
        _check_environment(job, findings)
    if job.type == "sweep":
        _check_sweep(job, findings, resume)
    elif not findings.at("command", "code", "outputs"):
        with findings.checking("command"):
            model_key = next(iter(job.model_outputs), None)
            _check_job(
                None,
                job.command,
                str(job.code),
                f"outputs/{model_key}" if model_key else None,
                job.model_outputs.get(model_key or ""),
            )
    if load_block is not None:
        _check_blocks(job, findings, load_block)
    findings.raise_if_any()
    return job


def _check_environment(job: JobFile, findings: Findings) -> None:
    """The inline environment: its fields combine, its spec parses and this machine can build it."""
    fields = {k: v for k, v in job.environment.items() if k != "environment_variables"}
    if not fields or "block" in fields or findings.at(job.key("environment")):
        return  # nothing to build, a saved block (`_check_blocks`), or already reported
    try:
        environment = TrainingEnvironment(**job.environment)
    except ValidationError as exc:
        raise ConfigurationError(" ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
    _check_buildable(environment, findings, job.key("environment"))


def _check_buildable(environment: TrainingEnvironment, findings: Findings, where: str) -> None:
    """What a build would refuse before installing anything: the spec, conda packages, the Python."""
    spec = environment.spec()  # files read, a Docker base image looked up
    if spec["kind"] not in ("pip", "conda") or (spec["kind"] == "conda" and _conda_executable()):
        return  # an image brings its Python, and conda installs the one its file asks for
    with findings.checking(f"{where}.conda_file" if environment.conda_file else where):
        _pip_plan(environment, spec)  # conda packages with no sure PyPI twin, without conda
    if spec["python_version"]:
        with findings.checking(f"{where}.conda_file" if environment.conda_file else where):
            find_python(spec["python_version"])


def _check_blocks(job: JobFile, findings: Findings, load_block: BlockLoader) -> None:
    """The saved blocks the file names exist (and a compute's scheduler answers)."""
    if job.compute is not None:
        try:
            load_block(job.compute, DaskCompute, "compute").check_reachable()
        except ConfigurationError as exc:
            findings.add(
                "compute",
                f"{exc} Or run on this machine: `compute: local` (or `--set compute=local`).",
            )
        except Exception as exc:  # noqa: BLE001 - ComputeError: the scheduler does not answer
            with findings.checking("compute"):
                raise exc
    block = job.environment.get("block")
    if block is not None:
        where = f"{job.key('environment')}.block"
        with findings.checking(where):
            _check_buildable(load_block(block, TrainingEnvironment, "environment.block"), findings, where)


# A valid value for each part of a sweep, so that `plan_sweep` checks one part at a time.
def _any_trial(params: dict[str, Any]) -> dict[str, float]:
    return {}


_VALID_PARTS: dict[str, Any] = {
    "trial": _any_trial,
    "search_space": {"x": {"type": "choice", "values": [0]}},
    "objective": {"primary_metric": "m", "goal": "maximize"},
    "sampling_algorithm": "random",
    "limits": None,
    "early_termination": None,
    "name": "check",
}


def _plan(**parts: Any) -> None:
    """`plan_sweep` with `parts` and a valid value for every other part."""
    given = {**_VALID_PARTS, **parts}
    plan_sweep(
        given["trial"],
        given["search_space"],
        given["objective"],
        given["sampling_algorithm"],
        given["limits"],
        given["early_termination"],
        None,
        given["name"],
        lambda _field, value: value,
    )


def _yaml_limits(message: str) -> str:
    """A `Limits` message in the job file's words (`timeout`, not `timeout_seconds`)."""
    for ours, azure in sorted(((v, k) for k, v in _LIMIT_NAMES.items()), reverse=True):
        message = message.replace(ours, azure)
    return message


def _check_sweep(job: JobFile, findings: Findings, resume: bool) -> None:
    """Each part of a sweep on its own (every problem, not the first), then the right parts together.

    `plan_sweep` raises at the first problem, so each part is given to it alone (the others
    valid stand-ins); then the parts that passed go together (the combinations it refuses,
    e.g. bayesian sampling with a bandit policy); and, once every part is right, the whole
    sweep with its command trial (`check_sweep`: placeholders, unused search-space entries).
    """
    spec = job.sweep or {}
    right: dict[str, Any] = {}  # the parts that pass on their own
    for part, value in (
        ("objective", spec.get("objective")),
        ("sampling_algorithm", spec.get("sampling_algorithm") or "random"),
        ("early_termination", spec.get("early_termination")),
    ):
        with findings.checking(part):
            _plan(**{part: value})
            right[part] = value
    space = spec.get("search_space")
    if isinstance(space, dict) and space:
        for key, entry in space.items():
            try:
                _plan(search_space={key: entry})
                right.setdefault("search_space", {})[key] = entry
            except ConfigurationError as exc:
                findings.add(f"search_space.{key}", str(exc).removeprefix(f"search_space[{key!r}]: "))
    else:
        with findings.checking("search_space"):
            _plan(search_space=space)
    right["limits"] = _check_limits(spec.get("limits") or {}, findings)
    try:
        _plan(**right)
    except ConfigurationError as exc:
        named = re.match(r"`(\w+)`", str(exc))
        findings.add(named.group(1) if named and named.group(1) in right else "", _yaml_limits(str(exc)))
    name = None
    with findings.checking("name"):
        name = sweep_name(job, resume)
        _plan(name=name)
    parts = ("objective", "search_space", "sampling_algorithm", "early_termination", "limits", "name")
    if name is None or findings.at(*parts, "trial", "command", "code", "inputs", "outputs"):
        return  # the whole sweep only once its parts are right, so that no problem is told twice
    with findings.checking(""):
        check_sweep(
            _trial(job, render_command(job, {}, {out: f"outputs/{out}" for out in job.outputs}), None),
            spec.get("search_space"),
            spec.get("objective"),
            spec.get("sampling_algorithm") or "random",
            _limits(spec),
            spec.get("early_termination"),
            None,
            name,
            None,
        )


def _check_limits(limits: dict[str, Any], findings: Findings) -> dict[str, Any]:
    """Each limit: one with a problem is left out and the rest checked again; return the right ones."""
    fields = {azure: ours for azure, ours in _LIMIT_NAMES.items()}
    known = {**{f: f for f in Limits.__dataclass_fields__ if f not in fields.values()}, **fields}
    for key in sorted(set(limits) - set(known)):
        findings.add(f"limits.{key}", f"unknown limit. Valid: {sorted(known)}.")
    values = {known[k]: v for k, v in limits.items() if k in known}
    left_out: set[str] = set()
    while True:
        try:
            _plan(limits=values)
            return values
        except ConfigurationError as exc:
            names = re.findall(r"`(\w+)`", str(exc))
            named = next((n for n in names if n in values), None)
            if not left_out & set(names):  # not a comparison with a limit already found wrong
                azure = {v: k for k, v in known.items()}.get(named or "", "")
                findings.add(f"limits.{azure}" if named else "limits", _yaml_limits(str(exc)))
            if named is None:
                return {}
            del values[named]
            left_out.add(named)


def _limits(spec: dict[str, Any]) -> dict[str, Any]:
    return {_LIMIT_NAMES.get(k, k): v for k, v in (spec.get("limits") or {}).items()}


def _trial(job: JobFile, command: str, environment: Any, code: str | None = None) -> dict[str, Any]:
    """A sweep job file's trial as the `sweep` flow takes it: a command trial (run from `code`, the job's by default)."""
    source = code or str(job.code)
    return {"type": "command", "command": command, "source_directory": source, "environment": environment}


@flow(name="run-job-file")
def run_job_file(path: str, overrides: list[str] | None = None, resume: bool = False) -> JobResult | SweepResult:
    """Run an Azure ML CLI v2 job file: `type: command` as a `train_job`, `type: sweep` as a `sweep`.

    `code`, `command` with `${{inputs.x}}` / `${{outputs.x}}`, literal and local
    `uri_file`/`uri_folder` inputs (mount, or download: a private copy removed when the job
    ends), outputs (folders under `./outputs`, kept as artifacts), `environment` (image,
    conda_file, build with a Dockerfile context,
    environment_variables, or `{block: <name>}`), `compute` (`local`,
    or the name of a DaskCompute block in place of `azureml:<cluster>`), `experiment_name`,
    `display_name`, `tags`, `limits.timeout`, and `distribution` with `resources.instance_count`
    are honoured.
    A sweep job's `trial` command gets `${{search_space.x}}` per trial, and its
    `sampling_algorithm`, `search_space`, `objective`, `limits` and `early_termination` go to
    the `sweep` flow as they are.

    Args:
        path: The job file.
        overrides: `key.sub=value` items, as with `az ml job create --set`.
        resume: Continue the sweep the file's `name:` names (a sweep job file is a new sweep otherwise).

    Raises:
        JobFileError: Before anything starts, with every problem of the file (`check_job_file`).
    """
    job = check_job_file(path, overrides, resume)
    outputs = {name: f"outputs/{name}" for name in job.outputs}
    scratch = MltrainSettings().runs_dir / "inputs" / (flow_run_info()["id"] or uuid.uuid4().hex)
    # The compute's block is loaded here only when some input is a path that may have to travel.
    has_paths = any(item.path is not None for item in job.inputs.values())
    runs_here = (
        not has_paths
        or job.compute is None
        or resolve_block(job.compute, DaskCompute, "compute").runs_on_this_machine()
    )
    with staged_inputs(job, scratch, runs_here, get_run_logger()) as staged:
        command = render_command(job, staged.inputs, outputs)
        if job.type == "sweep":
            return _run_sweep(job, command, resume, staged.code)
        if outputs:  # Azure ML creates output folders before the command starts
            command = f"mkdir -p {' '.join(shlex.quote(p) for p in outputs.values())} && {command}"
        get_run_logger().info("Job file %s: %s", job.path.name, command)
        tags: dict[str, Any] = {**job.tags, "mltrain.job_file": str(job.path)}
        if job.name:
            tags["mltrain.job_name"] = job.name
        if job.description:
            tags["mlflow.note.content"] = job.description  # the MLflow UI shows it as the run's description
        return train_job(
            command=command,
            source_directory=staged.code,
            environment=job_environment(job),
            compute=job.compute,
            experiment_name=job.experiment_name,
            display_name=job.display_name,
            tags=tags,
            distribution=job.distribution,
            instance_count=job.instance_count,
            timeout_seconds=job.timeout_seconds,
            # A `type: mlflow_model`/`custom_model` output is registered when the job succeeds.
            model_path=next((f"outputs/{key}" for key in job.model_outputs), None),
            model_name=next(iter(job.model_outputs.values()), None),
        )
