"""A job file's inputs and outputs: `inputs:` entries, model outputs, `${{...}}` placeholders.

Each reader checks one section of the file and records what is wrong in the file's `Findings`
(`jobs.jobfile_findings`); `jobs.jobfile.read_job_file` puts the sections together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.jobs.jobfile_findings import Findings
from prefect_mltrain.tracking.models import check_model_name

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
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
MODEL_OUTPUT_TYPES = ("mlflow_model", "custom_model")


@dataclass
class JobInput:
    """A literal value, or a local file or folder, for `${{inputs.<name>}}`."""

    name: str
    value: Any = None
    type: str = "literal"
    path: str | None = None
    mode: str = "ro_mount"


def read_inputs(specs: Mapping[str, Any], base: Path, findings: Findings) -> dict[str, JobInput]:
    """Every usable entry of `inputs:`; a bad one is recorded and left out."""
    inputs: dict[str, JobInput] = {}
    for name, spec in specs.items():
        with findings.checking(f"inputs.{name}"):
            inputs[name] = read_input(name, spec, base)
    return inputs


def read_input(name: str, spec: Any, base: Path) -> JobInput:
    """One entry of `inputs:`: a literal, or a local path (relative to the job file's folder)."""
    if not isinstance(spec, Mapping):
        return JobInput(name, value=spec)
    kind = spec.get("type", "uri_folder")
    if kind not in (*_PATH_TYPES, *_LITERAL_TYPES):
        raise ConfigurationError(
            f"`type: {kind}` is not supported for an input; supported: {', '.join(_PATH_TYPES)}, or a literal "
            f"({', '.join(_LITERAL_TYPES)}). Fix: use one of those, or give the value itself (`{name}: 0.5`)."
        )
    if kind in _LITERAL_TYPES:
        return JobInput(name, value=_literal(kind, spec))
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


def _literal(kind: str, spec: Mapping[str, Any]) -> Any:
    """The value of a `type: string|integer|number|boolean` input, checked against its type."""
    value = spec.get("default", spec.get("value"))
    if value is None:
        raise ConfigurationError(f"a `type: {kind}` input needs a value. Fix: add `default: <value>`.")
    if not isinstance(value, _LITERAL_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool)):
        raise ConfigurationError(
            f"is `type: {kind}`, but its value {value!r} is a {type(value).__name__}. Fix: give "
            f"{_LITERAL_EXAMPLES[kind]}, or change `type:`."
        )
    return value


def read_model_outputs(outputs: Mapping[str, Any], job_type: str, findings: Findings) -> dict[str, str]:
    """The outputs to register when the job succeeds, as Azure ML registers named model outputs.

    >>> read_model_outputs({"model": {"type": "mlflow_model", "name": "iris-clf"}, "logs": {}}, "command", Findings(Path("j")))
    {'model': 'iris-clf'}
    >>> read_model_outputs({"best_model": {"type": "custom_model"}}, "command", Findings(Path("j")))
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


def check_placeholders(command: str, where: str, defined: Mapping[str, list[str]], findings: Findings) -> None:
    """One problem per `${{inputs|outputs|search_space.<name>}}` of `command` that names no entry.

    A name whose own entry already has a problem is not reported again.
    """
    for kind, name in PLACEHOLDER.findall(command):
        known = defined[kind]
        if name not in known and not findings.at(f"{kind}.{name}"):
            findings.add(
                where,
                f"`${{{{{kind}.{name}}}}}` names no entry of `{kind}:` (defined: {sorted(known) or 'none'}). "
                f"Fix: add it under `{kind}:` or correct the name.",
            )
