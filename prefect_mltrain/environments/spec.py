"""What a training environment is made of, independent of how it is saved: conda-file parsing,
requirement normalisation and the content hash that identifies a built environment."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from typing import Any

import yaml

from prefect_mltrain.errors import EnvironmentSpecError

# Conda packages whose PyPI distribution has the same name, or the name given here.
# Anything else in a conda file cannot be translated for sure and is refused.
CONDA_TO_PYPI: dict[str, str] = {
    name: name
    for name in (
        "numpy scipy pandas scikit-learn matplotlib seaborn requests pyyaml tqdm joblib pillow "
        "mlflow torchvision torchaudio xgboost lightgbm catboost statsmodels sympy networkx h5py "
        "pyarrow polars plotly click rich typer pydantic fastapi uvicorn flask jinja2 six "
        "setuptools wheel cloudpickle dask distributed optuna onnx onnxruntime transformers "
        "datasets tokenizers opencv-python-headless scikit-image imageio tabulate"
    ).split()
} | {
    "pytorch": "torch",
    "py-xgboost": "xgboost",
    "pytorch-lightning": "pytorch-lightning",
    "lightning": "lightning",
    "tensorboard": "tensorboard",
    "ipykernel": "ipykernel",
}

_CONDA_KEYS = {"name", "channels", "dependencies", "prefix", "variables"}
_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<op>==|=|>=|<=|>|<|!=)?\s*(?P<ver>[^=\s]*)")
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")


def _translate_conda_dependency(spec: str) -> str | None:
    """Translate one conda dependency to a pip requirement, or None when it has no sure twin.

    >>> _translate_conda_dependency("scikit-learn=1.5")
    'scikit-learn==1.5.*'
    >>> _translate_conda_dependency("pytorch>=2.0")
    'torch>=2.0'
    >>> _translate_conda_dependency("cudatoolkit=11.8") is None
    True
    """
    match = _CONDA_SPEC.match(spec.split("::")[-1].strip())
    if not match or match.group("name").lower() not in CONDA_TO_PYPI:
        return None
    name = CONDA_TO_PYPI[match.group("name").lower()]
    op, version = match.group("op"), match.group("ver")
    if not op:
        return name
    if op == "=":  # conda's `=1.5` means 1.5.*; a build string after a second `=` is dropped
        return f"{name}=={version}" if version.endswith("*") else f"{name}=={version}.*"
    return f"{name}{op}{version}"


def parse_conda_file(text: str, origin: str) -> dict[str, Any]:
    """Parse a conda environment file into a python version, pip requirements and channels.

    Args:
        text: The YAML text.
        origin: Where it came from, for error messages.

    Returns:
        `{"python_version", "conda_dependencies", "pip_requirements", "pip_translated",
        "untranslatable", "channels"}`.

    Raises:
        EnvironmentSpecError: It does not parse, has unknown keys, or a malformed entry.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EnvironmentSpecError(
            f"The conda file {origin} is not valid YAML{where}: "
            f"{getattr(exc, 'problem', exc)}. Fix the file and try again."
        ) from None
    if not isinstance(doc, dict):
        raise EnvironmentSpecError(
            f"The conda file {origin} must be a mapping with `dependencies:`, but it holds a {type(doc).__name__}."
        )
    unknown = sorted(set(doc) - _CONDA_KEYS)
    if unknown:
        raise EnvironmentSpecError(
            f"The conda file {origin} has unknown keys {unknown}; valid keys are "
            f"{sorted(_CONDA_KEYS)}. Fix: remove or rename them."
        )
    python_version = None
    conda_deps: list[str] = []
    pip_reqs: list[str] = []
    for entry in doc.get("dependencies") or []:
        if isinstance(entry, dict) and set(entry) == {"pip"}:
            pip_reqs.extend(str(r).strip() for r in entry["pip"] or [])
        elif isinstance(entry, str):
            entry = entry.strip()
            if entry.split("=")[0].split(">")[0].split("<")[0].strip() == "python":
                python_version = re.sub(r"^python\s*=*\s*", "", entry).rstrip(".*") or None
            elif entry != "pip" and not entry.startswith("pip="):
                conda_deps.append(entry)
        else:
            raise EnvironmentSpecError(
                f"The conda file {origin} has a dependency {entry!r} that is neither a package spec nor a `pip:` list."
            )
    translated = {dep: _translate_conda_dependency(dep) for dep in conda_deps}
    return {
        "python_version": python_version,
        "conda_dependencies": sorted(conda_deps),
        "pip_requirements": pip_reqs,
        "pip_translated": sorted(v for v in translated.values() if v),
        "untranslatable": sorted(k for k, v in translated.items() if v is None),
        "channels": list(doc.get("channels") or []),
        "variables": dict(doc.get("variables") or {}),
    }


def _normalise_requirement(req: str) -> str:
    """Lower-case the name and drop spaces and comments so equal specs hash equally."""
    req = req.split("#", 1)[0].strip()
    match = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", req)
    if not match:
        return req
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() + match.group(2).replace(" ", "")


def hash_spec(spec: dict[str, Any]) -> str:
    """SHA-256 of a normalised spec's canonical JSON (what `content_hash` returns)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_python_version() -> str:
    """The `major.minor` of the Python running this process."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def is_executable(path: str) -> bool:
    """Tell whether `path` is an executable file."""
    return os.path.isfile(path) and os.access(path, os.X_OK)
