"""Azure ML CLI v2 job files: parse, validate and resolve them into prefect-mltrain terms.

Pure logic, no Prefect: the `run_job_file` flow and the CLI run what this returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefect_mltrain.errors import ConfigurationError
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
_PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
INPUT_MODES = ("ro_mount", "rw_mount", "download", "direct")


class JobFileError(ConfigurationError):
    """A job file that does not parse or does not follow the schema."""


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


MODEL_OUTPUT_TYPES = ("mlflow_model", "custom_model")


def _model_outputs(outputs: dict[str, Any], path: Path, job_type: str) -> dict[str, str]:
    """The outputs to register when the job succeeds, as Azure ML registers named model outputs.

    >>> _model_outputs({"model": {"type": "mlflow_model", "name": "iris-clf"}, "logs": {}}, Path("j.yml"), "command")
    {'model': 'iris-clf'}
    >>> _model_outputs({"best_model": {"type": "custom_model"}}, Path("j.yml"), "command")
    {'best_model': 'best-model'}
    """
    found: dict[str, str] = {}
    for key, spec in outputs.items():
        if not isinstance(spec, dict) or spec.get("type") not in MODEL_OUTPUT_TYPES:
            continue
        name = str(spec.get("name") or re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-"))
        try:
            check_model_name(name)
        except ConfigurationError as exc:
            raise _fail(path, f"`outputs.{key}.name`: {exc}") from None
        found[key] = name
    if found and job_type == "sweep":
        raise _fail(
            path,
            f"model outputs ({', '.join(found)}) in a sweep job are not registered per trial. Fix: "
            f"register the best trial with `register_best_model_as`, or drop `type: {MODEL_OUTPUT_TYPES[0]}`.",
        )
    if len(found) > 1:
        raise _fail(
            path,
            f"{len(found)} model outputs ({', '.join(found)}); a job registers one. Fix: keep one "
            f"`type: mlflow_model`/`custom_model` output and register the others with `prefect-mltrain model create`.",
        )
    return found


def _fail(path: Path, message: str) -> JobFileError:
    return JobFileError(f"{path}: {message}")


def apply_overrides(doc: dict[str, Any], overrides: list[str], path: Path) -> dict[str, Any]:
    """Apply `az ml job create --set key.sub=value` overrides (values parsed as YAML).

    >>> apply_overrides({"inputs": {"lr": 0.1}}, ["inputs.lr=0.5", "display_name=x"], Path("j.yml"))
    {'inputs': {'lr': 0.5}, 'display_name': 'x'}
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise _fail(path, f"`--set {item}` must look like key.sub=value, e.g. inputs.lr=0.5.")
        node = doc
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise _fail(path, f"`--set {item}`: {part!r} is not a mapping in the job file.")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return doc


def load_job_file(path: str | Path, overrides: list[str] | None = None) -> JobFile:
    """Parse and validate an Azure ML CLI v2 job file.

    Raises:
        JobFileError: Bad YAML (with line and column), an unknown type or key, a missing
            required key, a placeholder naming no input, a missing input path, or an Azure
            asset that cannot be used here (the message says what to use instead).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise JobFileError(f"Job file '{path}' does not exist.")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _fail(path, f"not valid YAML at {where}{getattr(exc, 'problem', exc)}.") from None
    if not isinstance(doc, dict):
        raise _fail(path, "a job file must be a YAML mapping with `type:` and `command:`.")
    doc = apply_overrides(doc, overrides or [], path)
    job_type = doc.get("type", "command")
    if job_type not in JOB_TYPES:
        raise _fail(path, f"`type: {job_type}` is not supported; valid types: {list(JOB_TYPES)}.")
    unknown = sorted(set(doc) - (_SWEEP_KEYS if job_type == "sweep" else _COMMAND_KEYS))
    if unknown:
        raise _fail(path, f"unknown keys {unknown} for a {job_type} job.")
    body = doc.get("trial", {}) if job_type == "sweep" else doc
    if job_type == "sweep" and not isinstance(body, dict):
        raise _fail(path, "`trial:` must be a mapping with `command:`, `code:` and `environment:`.")
    command = body.get("command") or doc.get("command")
    if not command:
        raise _fail(
            path, "the required key `command` is missing" + (" under `trial:`" if job_type == "sweep" else "") + "."
        )
    base = path.parent
    code = (base / str(body.get("code", doc.get("code", ".")))).resolve()
    if not code.is_dir():
        raise _fail(path, f"`code: {body.get('code', doc.get('code'))}` is not a folder ('{code}').")
    inputs = {name: _job_input(name, spec, base, path) for name, spec in (doc.get("inputs") or {}).items()}
    outputs = list((doc.get("outputs") or {}).keys())
    model_outputs = _model_outputs(doc.get("outputs") or {}, path, job_type)
    search_space = doc.get("search_space") or {}
    for kind, name in _PLACEHOLDER.findall(str(command)):
        known = {"inputs": inputs, "outputs": outputs, "search_space": search_space}[kind]
        if name not in known:
            raise _fail(
                path,
                f"`${{{{{kind}.{name}}}}}` in `command` names no entry of `{kind}:` "
                f"(defined: {sorted(known) or 'none'}).",
            )
    environment = _environment(body.get("environment", doc.get("environment")), base, path)
    environment.setdefault("environment_variables", {}).update(doc.get("environment_variables") or {})
    compute = doc.get("compute")
    if isinstance(compute, str) and compute.startswith("azureml:"):
        compute = compute.removeprefix("azureml:")
    if compute == "local":
        compute = None
    distribution = body.get("distribution", doc.get("distribution"))
    if distribution is not None and distribution.get("type") not in ("pytorch", "mpi"):
        raise _fail(path, f"`distribution.type: {distribution.get('type')}` is not supported; use pytorch or mpi.")
    instance_count = int((doc.get("resources") or {}).get("instance_count", 1))
    if instance_count < 1:
        raise _fail(path, f"`resources.instance_count` must be >= 1, but got {instance_count}.")
    return JobFile(
        type=job_type,
        path=path,
        command=str(command),
        code=code,
        inputs=inputs,
        outputs=outputs,
        model_outputs=model_outputs,
        environment=environment,
        compute=compute,
        distribution=distribution,
        instance_count=instance_count,
        experiment_name=doc.get("experiment_name"),
        display_name=doc.get("display_name"),
        name=str(doc["name"]) if doc.get("name") is not None else None,
        description=str(doc["description"]) if doc.get("description") is not None else None,
        tags={str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
        sweep={
            k: doc.get(k) for k in ("sampling_algorithm", "search_space", "objective", "limits", "early_termination")
        }
        if job_type == "sweep"
        else None,
    )


def _job_input(name: str, spec: Any, base: Path, path: Path) -> JobInput:
    if not isinstance(spec, dict):
        return JobInput(name, value=spec)
    kind = spec.get("type", "uri_folder")
    if kind not in ("uri_file", "uri_folder", "string", "integer", "number", "boolean"):
        raise _fail(path, f"input {name!r} has `type: {kind}`; supported: uri_file, uri_folder, or a literal.")
    if kind in ("string", "integer", "number", "boolean"):
        return JobInput(name, value=spec.get("default", spec.get("value")))
    raw = str(spec.get("path", ""))
    if raw.startswith(("azureml:", "azureml://", "wasbs://", "abfss://", "https://", "http://")):
        raise _fail(
            path,
            f"input {name!r} points at {raw!r}, a remote or registered Azure asset that cannot "
            f"be read here. Fix: download it and give a local `path:`.",
        )
    local = (base / raw.removeprefix("file://")).resolve()
    if not local.exists():
        raise _fail(path, f"input {name!r}: `path: {raw}` does not exist ('{local}').")
    if kind == "uri_file" and not local.is_file():
        raise _fail(path, f"input {name!r} is a uri_file but '{local}' is a folder; use `type: uri_folder`.")
    mode = spec.get("mode", "ro_mount")
    if mode not in INPUT_MODES:
        raise _fail(path, f"input {name!r} has `mode: {mode}`; valid modes: {list(INPUT_MODES)}.")
    return JobInput(name, type=kind, path=str(local), mode=mode)


def _environment(spec: Any, base: Path, path: Path) -> dict[str, Any]:
    """Map a job file's `environment:` onto TrainingEnvironment fields."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        raise _fail(
            path,
            f"`environment: {spec}` names a registered Azure ML environment, which cannot be "
            f"used here. Fix: describe it inline (image, conda_file or build) or use the name of a "
            f"saved TrainingEnvironment block under `environment: {{block: <name>}}`.",
        )
    if not isinstance(spec, dict):
        raise _fail(path, "`environment:` must be a mapping.")
    fields: dict[str, Any] = {"environment_variables": dict(spec.get("environment_variables") or {})}
    if "block" in spec:
        fields["block"] = spec["block"]
    if "conda_file" in spec:
        conda = base / str(spec["conda_file"])
        if not conda.is_file():
            raise _fail(path, f"`environment.conda_file: {spec['conda_file']}` does not exist ('{conda}').")
        fields["conda_file"] = str(conda)
    if "image" in spec:
        fields["docker_image"] = str(spec["image"]).removeprefix("docker.io/")
    if "build" in spec:
        context = (base / str((spec["build"] or {}).get("path", "."))).resolve()
        dockerfile = (spec["build"] or {}).get("dockerfile_path", "Dockerfile")
        if not (context / dockerfile).is_file():
            raise _fail(path, f"`environment.build`: no {dockerfile} in '{context}'.")
        fields["dockerfile"] = str(context / dockerfile)
        fields["docker_context"] = str(context)
    return fields


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
