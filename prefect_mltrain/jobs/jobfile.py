"""Azure ML CLI v2 job files: parse, validate and resolve them into prefect-mltrain terms.

Pure logic, no Prefect: the `run_job_file` flow and the CLI run what this returns. A file is
checked whole: `read_job_file` collects every problem it finds (`Findings`), each with where it
is written (`job.yml:12: `inputs.data.path``), so a user fixes them all in one round; checks
that need more than this package (environments, search spaces, saved blocks) add theirs to the
same `Findings` (see `flows/run_job_file.py`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefect_mltrain.errors import ComputeError, ConfigurationError, MissingDependencyError
from prefect_mltrain.jobs.distribution import check_distribution
from prefect_mltrain.tracking.models import check_model_name

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
# Azure's inline environment keys; `block` (a saved TrainingEnvironment) is ours.
_ENVIRONMENT_KEYS = {"image", "conda_file", "build", "block", "environment_variables", "description", "tags", "os_type"}
_PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
INPUT_MODES = ("ro_mount", "rw_mount", "download", "direct")
_LITERAL_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
# Inputs read from a local path; a model input is its file or folder, as Azure mounts it.
_PATH_TYPES = ("uri_file", "uri_folder", "mlflow_model", "custom_model")
_LITERAL_EXAMPLES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}
_TEXT_KEYS = ("name", "display_name", "experiment_name", "description", "compute")
_MAPPING_KEYS = ("inputs", "outputs", "tags", "environment_variables", "resources", "limits")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a job file: where (a key path such as `inputs.data.path`) and what."""

    where: str
    message: str


class JobFileError(ConfigurationError):
    """A job file that does not parse or does not follow the schema; `problems` holds every one.

    Its text is one `<file>:<line>: `<key>`: <what is wrong, the value, the fix>` line per problem.
    """

    def __init__(
        self, path: str | Path, problems: list[Problem] | str, locations: Mapping[str, str] | None = None
    ) -> None:
        self.path = Path(path)
        self.problems = [Problem("", problems)] if isinstance(problems, str) else list(problems)
        self.locations = dict(locations or {})
        super().__init__("\n".join(self.lines()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt with all its arguments when it crosses a process boundary (pickle).
        return (type(self), (self.path, self.problems, self.locations))

    @property
    def shown_path(self) -> str:
        """The file as a user would type it: relative to the working directory when under it."""
        return _shown(self.path)

    def lines(self) -> list[str]:
        """One line per problem, in the file's order: the file, the line (or the `--set` that
        gave the value), the key, what is wrong."""
        located = [
            (_line_of(self.locations, p.where), _located(self.shown_path, self.locations, p)) for p in self.problems
        ]
        return [text for _, text in sorted(located, key=lambda item: item[0])]


def _shown(path: Path) -> str:
    """`path` as a user would type it: relative to the working directory when under it."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _location(locations: Mapping[str, str], where: str) -> str:
    """Where the longest written prefix of key path `where` is: a line number, a `--set`, or ''."""
    parts = where.split(".") if where else []
    for end in range(len(parts), 0, -1):
        location = locations.get(".".join(parts[:end]), "")
        if location:
            return location
    return ""


def _line_of(locations: Mapping[str, str], where: str) -> int:
    """The line of `where`, for sorting: problems of the whole file first, `--set` values last."""
    location = _location(locations, where)
    return int(location) if location.isdigit() else 0 if not location else 1 << 30


def _located(file: str, locations: Mapping[str, str], problem: Problem) -> str:
    """`file:12: `key`: message`, with the line of the longest written prefix of the key.

    >>> _located("job.yml", {"inputs": "4", "inputs.data": "5"}, Problem("inputs.data.path", "is missing."))
    'job.yml:5: `inputs.data.path`: is missing.'
    >>> _located("job.yml", {"inputs.lr": "--set inputs.lr=x"}, Problem("inputs.lr", "must be a number."))
    'job.yml (--set inputs.lr=x): `inputs.lr`: must be a number.'
    """
    where = problem.where
    location = _location(locations, where)
    head = file if not location else f"{file}:{location}" if location.isdigit() else f"{file} ({location})"
    return f"{head}: `{where}`: {problem.message}" if where else f"{head}: {problem.message}"


def key_lines(text: str) -> dict[str, str]:
    """The line each key of a YAML document is written on, by dotted key path.

    >>> key_lines("inputs:\\n  data:\\n    path: d.csv\\n")
    {'inputs': '1', 'inputs.data': '2', 'inputs.data.path': '3'}
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    found: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    path = f"{prefix}.{key.value}" if prefix else str(key.value)
                    found.setdefault(path, str(key.start_mark.line + 1))
                    walk(value, path)

    walk(root, "")
    return found


def _narrowed(where: str, message: str) -> str:
    """`where`, made precise by the key a message names first, e.g. `distribution.type`.

    >>> _narrowed("trial.distribution", "`distribution.type` must be one of ['pytorch', 'mpi'], but got 'x'.")
    'trial.distribution.type'
    >>> _narrowed("objective", "`goal` must be one of ['maximize', 'minimize'].")
    'objective'
    """
    named = re.match(r"`([\w.]+)`", message)
    tail = where.rsplit(".", 1)[-1]
    if where and named and named.group(1).startswith(tail + "."):
        return where[: len(where) - len(tail)] + named.group(1)
    return where


class Findings:
    """The problems found in one job file so far, and where each key of it is written."""

    def __init__(self, path: Path, locations: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.locations = dict(locations or {})
        self.problems: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        """Record a problem at key path `where`; one already recorded there is not repeated."""
        if Problem(where, message) not in self.problems:
            self.problems.append(Problem(where, message))

    @contextmanager
    def checking(self, where: str) -> Iterator[None]:
        """Record the `ConfigurationError` (or missing extra, unreachable compute) raised in the block, and go on."""
        try:
            yield
        except (ConfigurationError, MissingDependencyError, ComputeError) as exc:
            if isinstance(exc, JobFileError):
                self.problems.extend(p for p in exc.problems if p not in self.problems)
            else:
                self.add(_narrowed(where, str(exc)), str(exc))

    def at(self, *prefixes: str) -> bool:
        """Whether a problem was recorded at one of `prefixes` or under it."""
        return any(p.where == k or p.where.startswith(k + ".") for p in self.problems for k in prefixes)

    def error(self) -> JobFileError:
        """Every problem as one error."""
        return JobFileError(self.path, self.problems, self.locations)

    def raise_if_any(self) -> None:
        """Raise `JobFileError` with every problem, if there is one."""
        if self.problems:
            raise self.error()


@dataclass
class JobInput:
    """A literal value, or a local file or folder, for `${{inputs.<name>}}`."""

    name: str
    value: Any = None
    type: str = "literal"
    path: str | None = None
    mode: str = "ro_mount"


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


MODEL_OUTPUT_TYPES = ("mlflow_model", "custom_model")


def _model_outputs(outputs: Mapping[str, Any], job_type: str, findings: Findings) -> dict[str, str]:
    """The outputs to register when the job succeeds, as Azure ML registers named model outputs.

    >>> _model_outputs({"model": {"type": "mlflow_model", "name": "iris-clf"}, "logs": {}}, "command", Findings(Path("j")))
    {'model': 'iris-clf'}
    >>> _model_outputs({"best_model": {"type": "custom_model"}}, "command", Findings(Path("j")))
    {'best_model': 'best-model'}
    """
    found: dict[str, str] = {}
    for key, spec in outputs.items():
        if not isinstance(spec, Mapping) or spec.get("type") not in MODEL_OUTPUT_TYPES:
            continue
        name = str(spec.get("name") or re.sub(r"[^a-z0-9]+", "-", str(key).lower()).strip("-"))
        with findings.checking(f"outputs.{key}.name"):
            found[key] = check_model_name(name)
    if found and job_type == "sweep":
        findings.add(
            "outputs",
            f"model outputs ({', '.join(found)}) in a sweep job are not registered per trial. Fix: "
            f"register the best trial with `register_best_model_as`, or drop `type: {MODEL_OUTPUT_TYPES[0]}`.",
        )
    elif len(found) > 1:
        findings.add(
            "outputs",
            f"{len(found)} model outputs ({', '.join(found)}); a job registers one. Fix: keep one "
            f"`type: mlflow_model`/`custom_model` output and register the others with `prefect-mltrain model create`.",
        )
    return found


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
    _apply_overrides(doc, overrides or [], findings)
    job_type = doc.get("type", "command")
    if job_type not in JOB_TYPES:
        findings.add("type", f"`type: {job_type}` is not supported; valid types: {list(JOB_TYPES)}.")
        raise findings.error()
    _unknown_keys(doc, _SWEEP_KEYS if job_type == "sweep" else _COMMAND_KEYS, "", f"a {job_type} job", findings)
    for key in _TEXT_KEYS:
        if doc.get(key) is not None and not isinstance(doc[key], (str, int, float)):
            findings.add(key, f"must be a string, but got {doc[key]!r}.")
            doc[key] = None
    for key in _MAPPING_KEYS:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            findings.add(key, f"must be a mapping of names to values, but got {doc[key]!r}.")
            doc[key] = None

    body: dict[str, Any] = doc
    if job_type == "sweep":
        trial = doc.get("trial")
        body = trial if isinstance(trial, dict) else {}
        if not isinstance(trial, dict):
            findings.add("trial", "must be a mapping with `command:`, `code:` and `environment:`.")
        else:
            _unknown_keys(body, _TRIAL_KEYS, "trial", "a sweep's trial", findings)
    in_trial = frozenset(body) if body is not doc else frozenset()

    def given(key: str) -> Any:
        return body.get(key, doc.get(key))

    def at(key: str) -> str:
        return f"trial.{key}" if key in in_trial else key

    command = given("command")
    if not command:
        findings.add(at("command"), "the required key `command` is missing: the shell command line to run.")
        command = ""
    elif not isinstance(command, str):
        findings.add(at("command"), f"must be a string (a shell command line), but got {command!r}.")
        command = ""
    base = path.parent
    code = _code(given("code"), base, at("code"), findings)
    inputs: dict[str, JobInput] = {}
    for name, spec in (doc.get("inputs") or {}).items():
        with findings.checking(f"inputs.{name}"):
            inputs[name] = _job_input(name, spec, base)
    outputs = [str(k) for k in (doc.get("outputs") or {})]
    model_outputs = _model_outputs(doc.get("outputs") or {}, job_type, findings)
    search_space = doc.get("search_space")
    defined: dict[str, list[str]] = {
        "inputs": list(inputs),
        "outputs": outputs,
        "search_space": [str(k) for k in search_space] if isinstance(search_space, dict) else [],
    }
    for kind, name in _PLACEHOLDER.findall(command):
        known = defined[kind]
        if name not in known and not findings.at(f"{kind}.{name}"):
            findings.add(
                at("command"),
                f"`${{{{{kind}.{name}}}}}` names no entry of `{kind}:` (defined: {sorted(known) or 'none'}). "
                f"Fix: add it under `{kind}:` or correct the name.",
            )
    environment: dict[str, Any] = {}
    with findings.checking(at("environment")):
        environment = _environment(given("environment"), base, at("environment"), findings)
    variables = _variables(doc.get("environment_variables"), "environment_variables", findings)
    environment.setdefault("environment_variables", {}).update(variables)
    compute = doc.get("compute")
    compute = str(compute).removeprefix("azureml:") if compute is not None else None
    if compute == "local":
        compute = None
    distribution, instance_count = _distribution(given("distribution"), doc.get("resources") or {}, at, findings)
    timeout = None
    if job_type == "command":
        timeout = _timeout((doc.get("limits") or {}), findings)
    return (
        JobFile(
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
            sweep={
                k: doc.get(k)
                for k in ("sampling_algorithm", "search_space", "objective", "limits", "early_termination")
            }
            if job_type == "sweep"
            else None,
            timeout_seconds=timeout,
            in_trial=in_trial,
        ),
        findings,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _unknown_keys(doc: Mapping[str, Any], valid: set[str], prefix: str, what: str, findings: Findings) -> None:
    """One problem per unknown key, with the valid key it most resembles."""
    for key in sorted(set(doc) - valid, key=str):
        close = difflib.get_close_matches(str(key), sorted(valid), n=1)
        hint = f"Did you mean `{close[0]}`?" if close else f"Valid keys: {sorted(valid)}."
        findings.add(f"{prefix}.{key}" if prefix else str(key), f"unknown key for {what}. {hint}")


def _code(value: Any, base: Path, where: str, findings: Findings) -> Path:
    """The source folder; the job file's own folder (after a problem is recorded) when it is bad."""
    if value is None:
        return base
    if not isinstance(value, str):
        findings.add(where, f"must be the path of a local folder, but got {value!r}.")
        return base
    code = (base / value).resolve()
    if not code.is_dir():
        findings.add(where, f"`code: {value}` is not a folder ('{code}'). Fix: give the folder of your scripts.")
        return base
    return code


def _job_input(name: str, spec: Any, base: Path) -> JobInput:
    if not isinstance(spec, Mapping):
        return JobInput(name, value=spec)
    kind = spec.get("type", "uri_folder")
    if kind not in (*_PATH_TYPES, *_LITERAL_TYPES):
        raise ConfigurationError(
            f"`type: {kind}` is not supported for an input; supported: {', '.join(_PATH_TYPES)}, or a literal "
            f"({', '.join(_LITERAL_TYPES)}). Fix: use one of those, or give the value itself (`{name}: 0.5`)."
        )
    if kind in _LITERAL_TYPES:
        value = spec.get("default", spec.get("value"))
        wanted = _LITERAL_TYPES[kind]
        if value is None:
            raise ConfigurationError(f"a `type: {kind}` input needs a value. Fix: add `default: <value>`.")
        if not isinstance(value, wanted) or (kind != "boolean" and isinstance(value, bool)):
            raise ConfigurationError(
                f"is `type: {kind}`, but its value {value!r} is a {type(value).__name__}. Fix: give "
                f"{_LITERAL_EXAMPLES[kind]}, or change `type:`."
            )
        return JobInput(name, value=value)
    raw = str(spec.get("path", ""))
    if not raw:
        raise ConfigurationError(f"a `type: {kind}` input needs `path:`, the local file or folder to read.")
    if raw.startswith(("azureml:", "azureml://", "wasbs://", "abfss://", "https://", "http://")):
        raise ConfigurationError(
            f"`path: {raw}` is a remote or registered Azure asset, which cannot be read here. Fix: "
            f"download it and give its local path."
        )
    local = (base / raw.removeprefix("file://")).resolve()
    if not local.exists():
        raise ConfigurationError(f"`path: {raw}` does not exist ('{local}'). Fix: correct the path.")
    if kind == "uri_file" and not local.is_file():
        raise ConfigurationError(f"is a uri_file but '{local}' is a folder. Fix: use `type: uri_folder`.")
    mode = spec.get("mode", "ro_mount")
    if mode not in INPUT_MODES:
        raise ConfigurationError(f"`mode: {mode}` is not a valid mode; valid modes: {list(INPUT_MODES)}.")
    return JobInput(name, type=kind, path=str(local), mode=mode)


def _variables(value: Any, where: str, findings: Findings) -> dict[str, str]:
    """`environment_variables` as strings; a nested value is a problem."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        findings.add(where, f"must be a mapping of variable names to values, but got {value!r}.")
        return {}
    bad = sorted(str(k) for k, v in value.items() if isinstance(v, (Mapping, list)))
    if bad:
        findings.add(where, f"values must be strings or numbers, but {bad} are not. Fix: quote them.")
    return {str(k): str(v) for k, v in value.items() if str(k) not in bad}


def _environment(spec: Any, base: Path, where: str, findings: Findings) -> dict[str, Any]:
    """Map a job file's `environment:` onto TrainingEnvironment fields."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        raise ConfigurationError(
            f"`environment: {spec}` names a registered Azure ML environment, which cannot be "
            f"used here. Fix: describe it inline (image, conda_file or build) or use the name of a "
            f"saved TrainingEnvironment block under `environment: {{block: <name>}}`."
        )
    if not isinstance(spec, Mapping):
        raise ConfigurationError("must be a mapping (image, conda_file, build) or `{block: <name>}`.")
    _unknown_keys(spec, _ENVIRONMENT_KEYS, where, "an inline environment", findings)
    if spec.get("os_type", "linux") != "linux":
        findings.add(f"{where}.os_type", f"`os_type: {spec['os_type']}` cannot run here: jobs run on Linux.")
    fields: dict[str, Any] = {
        "environment_variables": _variables(
            spec.get("environment_variables"), f"{where}.environment_variables", findings
        )
    }
    if "block" in spec:
        fields["block"] = spec["block"]
    if "conda_file" in spec:
        conda = base / str(spec["conda_file"])
        if conda.is_file():
            fields["conda_file"] = str(conda)
        else:
            findings.add(
                f"{where}.conda_file",
                f"`{spec['conda_file']}` does not exist ('{conda}'). Fix: give the conda file's path, relative "
                f"to the job file.",
            )
    if "image" in spec:
        fields["docker_image"] = str(spec["image"]).removeprefix("docker.io/")
    if "build" in spec:
        build = spec["build"] if isinstance(spec["build"], Mapping) else {}
        context = (base / str(build.get("path", "."))).resolve()
        dockerfile = build.get("dockerfile_path", "Dockerfile")
        if (context / dockerfile).is_file():
            fields["dockerfile"] = str(context / dockerfile)
            fields["docker_context"] = str(context)
        else:
            findings.add(f"{where}.build", f"no {dockerfile} in '{context}'. Fix: correct `path:`/`dockerfile_path:`.")
    return fields


def _distribution(
    distribution: Any, resources: Mapping[str, Any], at: Callable[[str], str], findings: Findings
) -> tuple[dict[str, Any] | None, int]:
    """`distribution` and `resources.instance_count`, checked by `jobs.distribution.check_distribution`."""
    instance_count = resources.get("instance_count", 1)
    with findings.checking("resources.instance_count"):
        check_distribution(None, instance_count)
    if findings.at("resources.instance_count"):
        instance_count = 1
    if distribution is not None and not isinstance(distribution, dict):
        findings.add(at("distribution"), f"must be a mapping such as `{{type: pytorch}}`, but got {distribution!r}.")
        return None, instance_count
    with findings.checking(at("distribution")):
        check_distribution(distribution, 1)
    return (None if findings.at(at("distribution")) else distribution), instance_count


def _timeout(limits: Mapping[str, Any], findings: Findings) -> float | None:
    """A command job's `limits.timeout` (seconds); Azure's only command job limit."""
    for key in sorted(set(limits) - {"timeout"}):
        findings.add(f"limits.{key}", "unknown limit for a command job. Valid: ['timeout'] (seconds).")
    value = limits.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        findings.add("limits.timeout", f"must be a positive number of seconds, but got {value!r}. Fix: e.g. 3600.")
        return None
    return float(value)


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

    return _PLACEHOLDER.sub(value, job.command)
