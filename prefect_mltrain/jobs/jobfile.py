"""Azure ML CLI v2 job files: parse, validate and resolve them into prefect-mltrain terms.

Pure logic, no Prefect: the `run_job_file` flow and the CLI run what this returns. A file is
checked whole: `read_job_file` collects every problem it finds (`Findings`), each with where it
is written (`job.yml:12: `inputs.data.path``), so a user fixes them all in one round; checks
that need more than this package (environments, search spaces, saved blocks) add theirs to the
same `Findings` (see `flows/run_job_file.py`).

This module is the public entry: the job as a whole (`JobFile`, `read_job_file`,
`load_job_file`, `--set` overrides, `render_command`). The problems and where they are written
live in `jobs.jobfile_findings`; the sections' readers in `jobs.jobfile_io` (inputs, outputs,
placeholders) and `jobs.jobfile_runtime` (code, environment, compute, distribution, limits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefect_mltrain.jobs.jobfile_findings import Findings, JobFileError, Problem, key_lines, unknown_keys
from prefect_mltrain.jobs.jobfile_io import (
    INPUT_MODES,
    MODEL_OUTPUT_TYPES,
    PLACEHOLDER,
    JobInput,
    check_placeholders,
    read_inputs,
    read_model_outputs,
)
from prefect_mltrain.jobs.jobfile_runtime import (
    read_code,
    read_compute,
    read_distribution,
    read_environment,
    read_timeout,
    read_variables,
)

__all__ = [
    "INPUT_MODES",
    "JOB_TYPES",
    "MODEL_OUTPUT_TYPES",
    "Findings",
    "JobFile",
    "JobFileError",
    "JobInput",
    "Problem",
    "apply_overrides",
    "key_lines",
    "load_job_file",
    "read_job_file",
    "render_command",
]

JOB_TYPES = ("command", "sweep")
_COMMAND_KEYS = {
    "$schema",
    "type",
    "code",
    "command",
    "inputs",
    "outputs",
    "environment",
    "compute",
    "distribution",
    "resources",
    "experiment_name",
    "display_name",
    "name",
    "description",
    "tags",
    "environment_variables",
    "limits",
    "services",
    "identity",
    "queue_settings",
}
_SWEEP_KEYS = _COMMAND_KEYS | {"trial", "sampling_algorithm", "search_space", "objective", "early_termination"}
# What a sweep job keeps for its sweep (`JobFile.sweep`).
_SWEEP_SECTIONS = ("sampling_algorithm", "search_space", "objective", "limits", "early_termination")
# What a sweep's `trial:` may hold: the command job's own keys (Azure's trial is a command job).
_TRIAL_KEYS = {
    "$schema",
    "type",
    "code",
    "command",
    "environment",
    "environment_variables",
    "distribution",
    "resources",
}
_TEXT_KEYS = ("name", "display_name", "experiment_name", "description", "compute")
_MAPPING_KEYS = ("inputs", "outputs", "tags", "environment_variables", "resources", "limits")


@dataclass
class JobFile:
    """A validated job file, with every path made absolute."""

    type: str
    path: Path
    command: str
    code: Path
    inputs: dict[str, JobInput] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    #: Outputs of `type: mlflow_model` / `custom_model`: output name -> registry name.
    model_outputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    compute: str | None = None
    distribution: dict[str, Any] | None = None
    instance_count: int = 1
    experiment_name: str | None = None
    display_name: str | None = None
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    sweep: dict[str, Any] | None = None
    #: A command job's `limits.timeout`: the command is killed after this many seconds.
    timeout_seconds: float | None = None
    #: The keys a sweep's `trial:` gave (`command`, `code`, `environment`, ...), for `key`.
    in_trial: frozenset[str] = frozenset()

    def key(self, name: str) -> str:
        """Where `name` is written in the file: `trial.<name>` when a sweep's trial gave it.

        >>> JobFile("sweep", Path("s.yml"), "x", Path("."), in_trial=frozenset({"environment"})).key("environment")
        'trial.environment'
        """
        return f"trial.{name}" if name in self.in_trial else name


def apply_overrides(doc: dict[str, Any], overrides: list[str], path: Path) -> dict[str, Any]:
    """Apply `az ml job create --set key.sub=value` overrides (values parsed as YAML).

    >>> apply_overrides({"inputs": {"lr": 0.1}}, ["inputs.lr=0.5", "display_name=x"], Path("j.yml"))
    {'inputs': {'lr': 0.5}, 'display_name': 'x'}
    """
    findings = Findings(path)
    _apply_overrides(doc, overrides, findings)
    findings.raise_if_any()
    return doc


def _apply_overrides(doc: dict[str, Any], overrides: list[str], findings: Findings) -> None:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            findings.add("", f"`--set {item}` must look like key.sub=value, e.g. --set inputs.lr=0.5.")
            continue
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                findings.add("", f"`--set {item}`: {part!r} is not a mapping in the job file.")
                break
            node = child
        else:
            try:
                node[parts[-1]] = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                node[parts[-1]] = raw  # as `az ml`: a value that is no YAML is a string
            findings.locations[key] = f"--set {item}"


def load_job_file(path: str | Path, overrides: list[str] | None = None) -> JobFile:
    """Parse and validate an Azure ML CLI v2 job file.

    Raises:
        JobFileError: Every problem found: bad YAML (with line and column), an unknown type or
            key, a missing required key, a value of the wrong type, a placeholder naming no
            input, a missing input path, or an Azure asset that cannot be used here (the
            message says what to use instead).
    """
    job, findings = read_job_file(path, overrides)
    findings.raise_if_any()
    return job


def read_job_file(path: str | Path, overrides: list[str] | None = None) -> tuple[JobFile, Findings]:
    """Parse a job file and check what this module can; return it and every problem found.

    The returned `JobFile` holds the usable part of a file with problems (a bad entry is left
    out or given its default), so later checks can go on without reporting a problem twice.

    Raises:
        JobFileError: At once, when there is nothing to check further: no such file, not YAML,
            not a mapping, or a job type other than command and sweep.
    """
    path = Path(path).expanduser().resolve()
    doc, findings = _parse(path, overrides or [])
    job_type = doc.get("type", "command")
    if job_type not in JOB_TYPES:
        findings.add("type", f"`type: {job_type}` is not supported; valid types: {list(JOB_TYPES)}.")
        raise findings.error()
    _check_top_level(doc, job_type, findings)
    sections = _sections(doc, job_type, findings)
    at = sections.at
    command = _command(sections.given("command"), at("command"), findings)
    base = path.parent
    code = read_code(sections.given("code"), base, at("code"), findings)
    inputs = read_inputs(doc.get("inputs") or {}, base, findings)
    outputs = [str(k) for k in (doc.get("outputs") or {})]
    model_outputs = read_model_outputs(doc.get("outputs") or {}, job_type, findings)
    search_space = doc.get("search_space")
    defined = {
        "inputs": list(inputs),
        "outputs": outputs,
        "search_space": [str(k) for k in search_space] if isinstance(search_space, dict) else [],
    }
    check_placeholders(command, at("command"), defined, findings)
    environment: dict[str, Any] = {}
    with findings.checking(at("environment")):
        environment = read_environment(sections.given("environment"), base, at("environment"), findings)
    variables = read_variables(doc.get("environment_variables"), "environment_variables", findings)
    environment.setdefault("environment_variables", {}).update(variables)
    compute = read_compute(doc.get("compute"))
    distribution, instance_count = read_distribution(
        sections.given("distribution"), doc.get("resources") or {}, at, findings
    )
    timeout = read_timeout(doc.get("limits") or {}, findings) if job_type == "command" else None
    job = JobFile(
        type=job_type,
        path=path,
        command=command,
        code=code,
        inputs=inputs,
        outputs=outputs,
        model_outputs=model_outputs,
        environment=environment,
        compute=compute,
        distribution=distribution,
        instance_count=instance_count,
        experiment_name=_text(doc.get("experiment_name")),
        display_name=_text(doc.get("display_name")),
        name=_text(doc.get("name")),
        description=_text(doc.get("description")),
        tags={str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
        sweep={k: doc.get(k) for k in _SWEEP_SECTIONS} if job_type == "sweep" else None,
        timeout_seconds=timeout,
        in_trial=sections.in_trial,
    )
    return job, findings


def _parse(path: Path, overrides: list[str]) -> tuple[dict[str, Any], Findings]:
    """The file's YAML mapping with the `--set` overrides applied, and its `Findings` so far.

    Raises:
        JobFileError: No such file, not YAML (with line and column), or not a mapping.
    """
    if not path.is_file():
        raise JobFileError(path, f"the job file does not exist ('{path}'). Fix: check the path.")
    text = path.read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise JobFileError(path, f"not valid YAML at {where}{getattr(exc, 'problem', exc)}.") from None
    if not isinstance(doc, dict):
        raise JobFileError(path, "a job file must be a YAML mapping with `type:` and `command:`.")
    findings = Findings(path, key_lines(text))
    _apply_overrides(doc, overrides, findings)
    return doc, findings


def _check_top_level(doc: dict[str, Any], job_type: str, findings: Findings) -> None:
    """Unknown top-level keys, and text or mapping keys of another type (these are set to None)."""
    unknown_keys(doc, _SWEEP_KEYS if job_type == "sweep" else _COMMAND_KEYS, "", f"a {job_type} job", findings)
    for key in _TEXT_KEYS:
        if doc.get(key) is not None and not isinstance(doc[key], (str, int, float)):
            findings.add(key, f"must be a string, but got {doc[key]!r}.")
            doc[key] = None
    for key in _MAPPING_KEYS:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            findings.add(key, f"must be a mapping of names to values, but got {doc[key]!r}.")
            doc[key] = None


@dataclass(frozen=True)
class _Sections:
    """Where the command's own keys are read: a sweep's `trial:` first, then the file's top level."""

    doc: dict[str, Any]
    body: dict[str, Any]
    in_trial: frozenset[str]

    def given(self, key: str) -> Any:
        return self.body.get(key, self.doc.get(key))

    def at(self, key: str) -> str:
        """The key path `key` is written at: `trial.<key>` when the trial gave it."""
        return f"trial.{key}" if key in self.in_trial else key


def _sections(doc: dict[str, Any], job_type: str, findings: Findings) -> _Sections:
    """A command job's keys are its own; a sweep's are those of its `trial:` (a command job)."""
    if job_type != "sweep":
        return _Sections(doc, doc, frozenset())
    trial = doc.get("trial")
    if not isinstance(trial, dict):
        findings.add("trial", "must be a mapping with `command:`, `code:` and `environment:`.")
        return _Sections(doc, {}, frozenset())
    unknown_keys(trial, _TRIAL_KEYS, "trial", "a sweep's trial", findings)
    return _Sections(doc, trial, frozenset(trial))


def _command(command: Any, where: str, findings: Findings) -> str:
    """The shell command line; '' (after a problem is recorded) when missing or not a string."""
    if not command:
        findings.add(where, "the required key `command` is missing: the shell command line to run.")
        return ""
    if not isinstance(command, str):
        findings.add(where, f"must be a string (a shell command line), but got {command!r}.")
        return ""
    return command


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def render_command(
    job: JobFile, input_paths: dict[str, str], output_paths: dict[str, str], search_space: dict[str, Any] | None = None
) -> str:
    """Substitute `${{inputs.x}}`, `${{outputs.x}}` and `${{search_space.x}}` in the command.

    Without `search_space`, its placeholders are left for each sweep trial to fill in.

    >>> job = JobFile("command", Path("j.yml"), "python t.py --lr ${{inputs.lr}} --out ${{outputs.m}}", Path("."),
    ...               inputs={"lr": JobInput("lr", 0.1)}, outputs=["m"])
    >>> render_command(job, {}, {"m": "outputs/m"})
    'python t.py --lr 0.1 --out outputs/m'
    """

    def value(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "outputs":
            return output_paths[name]
        if kind == "search_space":
            return match.group(0) if search_space is None else str(search_space[name])
        item = job.inputs[name]
        return input_paths.get(name, str(item.value if item.path is None else item.path))

    return PLACEHOLDER.sub(value, job.command)
