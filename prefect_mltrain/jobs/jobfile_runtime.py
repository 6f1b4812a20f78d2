"""Where and how a job file's command runs: `code:`, `environment:`, `environment_variables:`,
`compute:`, `distribution:` with `resources.instance_count`, and a command job's `limits.timeout`.

Each reader checks one section of the file and records what is wrong in the file's `Findings`
(`jobs.jobfile_findings`); `jobs.jobfile.read_job_file` puts the sections together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.jobs.distribution import check_distribution
from prefect_mltrain.jobs.jobfile_findings import Findings, unknown_keys

# Azure's inline environment keys; `block` (a saved TrainingEnvironment) is ours.
_ENVIRONMENT_KEYS = {"image", "conda_file", "build", "block", "environment_variables", "description", "tags", "os_type"}


def read_code(value: Any, base: Path, where: str, findings: Findings) -> Path:
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


def read_variables(value: Any, where: str, findings: Findings) -> dict[str, str]:
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


def read_environment(spec: Any, base: Path, where: str, findings: Findings) -> dict[str, Any]:
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
    unknown_keys(spec, _ENVIRONMENT_KEYS, where, "an inline environment", findings)
    if spec.get("os_type", "linux") != "linux":
        findings.add(f"{where}.os_type", f"`os_type: {spec['os_type']}` cannot run here: jobs run on Linux.")
    fields: dict[str, Any] = {
        "environment_variables": read_variables(
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


def read_compute(value: Any) -> str | None:
    """The compute a job names (`azureml:` dropped); `local` and none are the default, in-process.

    >>> read_compute("azureml:gpu-cluster"), read_compute("local"), read_compute(None)
    ('gpu-cluster', None, None)
    """
    compute = str(value).removeprefix("azureml:") if value is not None else None
    return None if compute == "local" else compute


def read_distribution(
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


def read_timeout(limits: Mapping[str, Any], findings: Findings) -> float | None:
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
