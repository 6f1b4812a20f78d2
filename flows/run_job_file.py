"""`run_job_file`: run an Azure ML CLI v2 job file (`az ml job create --file job.yml`) here."""

from __future__ import annotations

import re
import shlex
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.logging import get_run_logger

from prefect_mltrain.blocks._load import resolve_block
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.flows.sweep import SweepResult, study_path, sweep
from prefect_mltrain.flows.train_job import JobResult, train_job
from prefect_mltrain.jobs.jobfile import JobFile, load_job_file, render_command
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.tracking.links import flow_run_info


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


@contextmanager
def _staged_inputs(job: JobFile) -> Iterator[dict[str, str]]:
    """Paths the command sees for file inputs: the original (mount) or a private copy (download).

    The copies are the job's scratch, as on an Azure ML compute's disk: their folder
    (`<runs>/inputs/<flow run id>`) is removed when the job ends, whether it succeeded or not.
    """
    staged: dict[str, str] = {}
    copies = MltrainSettings().runs_dir / "inputs" / (flow_run_info()["id"] or uuid.uuid4().hex)
    try:
        for name, item in job.inputs.items():
            if item.path is None:
                continue
            if item.mode == "download":
                target = copies / name / Path(item.path).name
                target.parent.mkdir(parents=True, exist_ok=True)
                if Path(item.path).is_dir():
                    shutil.copytree(item.path, target)
                else:
                    shutil.copy2(item.path, target)
                staged[name] = str(target)
            else:
                staged[name] = item.path
        yield staged
    finally:
        shutil.rmtree(copies, ignore_errors=True)


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


def _run_sweep(job: JobFile, command: str, resume: bool = False) -> SweepResult:
    """A `type: sweep` job file as a `sweep` whose trials run the (rendered) trial command."""
    spec = job.sweep or {}
    limits = {_LIMIT_NAMES.get(k, k): v for k, v in (spec.get("limits") or {}).items()}
    trial = {
        "type": "command",
        "command": command,
        "source_directory": str(job.code),
        "environment": job_environment(job),
    }
    return sweep(
        trial=trial,
        search_space=spec.get("search_space") or {},
        objective=spec.get("objective"),
        sampling_algorithm=spec.get("sampling_algorithm") or "random",
        limits=limits,
        early_termination=spec.get("early_termination"),
        name=sweep_name(job, resume),
        compute=job.compute,
        experiment_name=job.experiment_name,
    )


@flow(name="run-job-file")
def run_job_file(path: str, overrides: list[str] | None = None, resume: bool = False) -> JobResult | SweepResult:
    """Run an Azure ML CLI v2 job file: `type: command` as a `train_job`, `type: sweep` as a `sweep`.

    `code`, `command` with `${{inputs.x}}` / `${{outputs.x}}`, literal and local
    `uri_file`/`uri_folder` inputs (mount, or download: a private copy removed when the job
    ends), outputs (folders under `./outputs`, kept as artifacts), `environment` (image,
    conda_file, build with a Dockerfile context,
    environment_variables, or `{block: <name>}`), `compute` (`local`,
    or the name of a DaskCompute block in place of `azureml:<cluster>`), `experiment_name`,
    `display_name`, `tags`, and `distribution` with `resources.instance_count` are honoured.
    A sweep job's `trial` command gets `${{search_space.x}}` per trial, and its
    `sampling_algorithm`, `search_space`, `objective`, `limits` and `early_termination` go to
    the `sweep` flow as they are.

    Args:
        path: The job file.
        overrides: `key.sub=value` items, as with `az ml job create --set`.
        resume: Continue the sweep the file's `name:` names (a sweep job file is a new sweep otherwise).
    """
    job = load_job_file(path, overrides)
    outputs = {name: f"outputs/{name}" for name in job.outputs}
    with _staged_inputs(job) as inputs:
        command = render_command(job, inputs, outputs)
        if job.type == "sweep":
            return _run_sweep(job, command, resume)
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
            source_directory=str(job.code),
            environment=job_environment(job),
            compute=job.compute,
            experiment_name=job.experiment_name,
            display_name=job.display_name,
            tags=tags,
            distribution=job.distribution,
            instance_count=job.instance_count,
            # A `type: mlflow_model`/`custom_model` output is registered when the job succeeds.
            model_path=next((f"outputs/{key}" for key in job.model_outputs), None),
            model_name=next(iter(job.model_outputs.values()), None),
        )
