"""Build a `TrainingEnvironment` once per machine, cached by its content hash.

Docker environments are handed to `environments/docker_build.py`; the rest are virtualenvs:

A build goes into `<envs>/<hash>/` under an exclusive file lock and counts only once its
marker file is written, last; a failed or killed build is removed or, if the process died,
removed by the next build. A cache hit reads one small file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_mltrain.environments.spec import (
    default_python_version,
    hash_spec,
    is_executable,
)
from prefect_mltrain.errors import EnvironmentBuildError, EnvironmentSpecError
from prefect_mltrain.settings import MltrainSettings
from prefect_mltrain.system.files import exclusive
from prefect_mltrain.system.process import stream_process
from prefect_mltrain.tracking.links import run_logger

if TYPE_CHECKING:
    from prefect_mltrain.blocks.environment import TrainingEnvironment

MARKER = ".mltrain-env.json"


@dataclass(frozen=True)
class BuiltEnvironment:
    """A usable environment: the Python to run and where it lives."""

    content_hash: str
    kind: str
    python: str
    prefix: str | None
    cached: bool
    build_seconds: float
    installer: str | None
    image: str | None = None  # Docker environments: the image jobs run in

    @property
    def bin_dir(self) -> str:
        """Directory to put first on PATH, so `python` in a command means this Python."""
        return str(Path(self.python).parent)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    return run_logger("prefect_mltrain.environment")  # type: ignore[no-any-return]


def _uv() -> str | None:
    candidate = Path(sys.executable).with_name("uv")
    if candidate.exists():
        return str(candidate)
    return shutil.which("uv")


def _python_version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _candidate_pythons() -> dict[str, str]:
    """Interpreters found on PATH (and this one), by full version."""
    found: dict[str, str] = {}
    names = {"python3", "python"} | {f"python3.{minor}" for minor in range(8, 16)}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for name in names:
            path = os.path.join(directory, name)
            if is_executable(path):
                version = _python_version_of(path)
                if version:
                    found.setdefault(version, os.path.realpath(path))
    found.setdefault("%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.executable))
    return found


def find_python(version: str | None) -> str:
    """Return an interpreter of `version` (`3.11` or `3.11.7`) that this machine has.

    Raises:
        EnvironmentSpecError: None matches; the message lists the versions there are.
    """
    version = version or default_python_version()
    current = "%d.%d.%d" % sys.version_info[:3]
    if current == version or current.startswith(version + "."):
        return sys.executable
    candidates = _candidate_pythons()
    for full, path in sorted(candidates.items()):
        if full == version or full.startswith(version + "."):
            return path
    raise EnvironmentSpecError(
        f"Python {version} is asked for (`python_version` or the conda file's `python=`), but "
        f"this machine has only {sorted(candidates)}. Fix: install Python {version} (pyenv, "
        f"`uv python install {version}`, or the OS package), or ask for one of those versions."
    )


def _read_marker(prefix: Path) -> dict[str, Any] | None:
    try:
        return json.loads((prefix / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pip_plan(environment: TrainingEnvironment, spec: dict[str, Any]) -> list[str]:
    requirements = list(spec["pip_requirements"])
    conda = spec.get("conda")
    if conda:
        if conda["untranslatable"]:
            raise EnvironmentSpecError(
                "No conda, mamba or micromamba is on PATH, and these conda packages have no "
                f"sure PyPI equivalent: {conda['untranslatable']}. Fix: install micromamba so the "
                "file is used as is, or move those packages to the file's `pip:` section under "
                "their PyPI names."
            )
        requirements += conda["pip_translated"]
    return requirements


def index_url_with_credentials(environment: TrainingEnvironment) -> str:
    """`index_url` with `index_username`/`index_password` put in, for the installer's environment.

    >>> from pydantic import SecretStr
    >>> from prefect_mltrain.blocks import TrainingEnvironment
    >>> index_url_with_credentials(TrainingEnvironment(pip_requirements=["x"],
    ...     index_url="https://pypi.example/simple", index_username="me", index_password=SecretStr("s3")))
    'https://me:s3@pypi.example/simple'
    """
    url = environment.index_url or ""
    if environment.index_password is None:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    user = quote(environment.index_username or "__token__", safe="")
    secret = quote(environment.index_password.get_secret_value(), safe="")
    return urlunsplit(
        parts._replace(netloc=f"{user}:{secret}@{parts.hostname}" + (f":{parts.port}" if parts.port else ""))
    )


def _conda_executable() -> str | None:
    for name in ("micromamba", "mamba", "conda"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_build_step(argv: list[str], env: dict[str, str], log: Any, what: str) -> None:
    log.info("$ %s", " ".join(argv))
    result = stream_process(argv, env=env, on_line=lambda _stream, line: log.info("%s", line))
    if result.exit_code != 0:
        raise EnvironmentBuildError(
            f"{what} failed with exit code {result.exit_code}. Last output:\n{result.output_tail}"
        )


def _build_into(prefix: Path, environment: TrainingEnvironment, spec: dict[str, Any], installer: str, log: Any) -> str:
    """Create the environment in `prefix`; return the installer used."""
    env = dict(
        os.environ, UV_PYTHON_DOWNLOADS="never", UV_SYSTEM_CERTS="1"
    )  # UV_NATIVE_TLS is deprecated: a warning on every uv error
    if environment.index_url:
        # Through the environment, not argv, so credentials never show in logs or `ps`.
        env["PIP_EXTRA_INDEX_URL"] = env["UV_EXTRA_INDEX_URL"] = index_url_with_credentials(environment)
    conda = _conda_executable() if spec["kind"] == "conda" else None
    if conda is not None:
        text, _ = environment._conda_text()
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
            handle.write(text)
        verb = ["create", "-y"] if conda.endswith("micromamba") else ["env", "create"]
        _run_build_step([conda, *verb, "-p", str(prefix), "-f", handle.name], env, log, "conda build")
        return Path(conda).name
    requirements = _pip_plan(environment, spec)
    base_python = find_python(spec["python_version"])
    uv = _uv() if installer in ("auto", "uv") else None
    if installer == "uv" and uv is None:
        raise EnvironmentSpecError(
            "PREFECT_MLTRAIN_INSTALLER=uv but no `uv` is installed. Fix: pip install uv, or set it to `auto`."
        )
    python = str(prefix / "bin" / "python")
    if uv:
        _run_build_step([uv, "venv", "--quiet", "--seed", "--python", base_python, str(prefix)], env, log, "uv venv")
        if requirements:
            _run_build_step([uv, "pip", "install", "--python", python, *requirements], env, log, "uv pip install")
        return "uv"
    _run_build_step([base_python, "-m", "venv", str(prefix)], env, log, "python -m venv")
    if requirements:
        _run_build_step(
            [python, "-m", "pip", "install", "--disable-pip-version-check", *requirements],
            env,
            log,
            "pip install",
        )
    return "pip"


def cached_build(environment: TrainingEnvironment, envs_dir: Path | None = None) -> BuiltEnvironment | None:
    """The environment as this machine already has it, or None when `build` has work to do.

    Builds nothing and reads at most one small file, so a flow whose workers share this
    machine can skip the build task on a cache hit. Docker environments give None: their
    cache is the Docker engine's, looked up by `build`.
    """
    if environment.is_container:
        return None
    spec = environment.spec()
    digest = hash_spec(spec)
    if spec["kind"] == "user-managed":
        if not is_executable(spec["python"]):
            return None  # `build` raises the error that says so
        return BuiltEnvironment(digest, "user-managed", spec["python"], None, True, 0.0, None)
    marker = _read_marker((envs_dir or MltrainSettings().envs_dir) / digest[:16])
    return None if marker is None else BuiltEnvironment(**{**marker["built"], "cached": True})


def build(
    environment: TrainingEnvironment, envs_dir: Path | None = None, installer: str | None = None
) -> BuiltEnvironment:
    """Build `environment`, or return the cached build of the same content hash.

    Args:
        environment: The spec.
        envs_dir: Cache folder; the project home's `envs/` when None.
        installer: `uv`, `pip` or `auto`; `PREFECT_MLTRAIN_INSTALLER` when None.

    Raises:
        EnvironmentSpecError: The spec is invalid or needs what this machine lacks.
        EnvironmentBuildError: The installer or Docker build failed; nothing of the build is kept.
        DockerUnavailableError: A Docker environment and no engine running.
    """
    settings = MltrainSettings()
    spec = environment.spec()
    digest = hash_spec(spec)
    if spec["kind"] == "user-managed":
        python = spec["python"]
        if not is_executable(python):
            raise EnvironmentSpecError(
                f"`python_executable`={python!r} is not an executable file. Fix: give the full "
                f"path of a Python interpreter, e.g. {sys.executable!r}."
            )
        return BuiltEnvironment(digest, "user-managed", python, None, True, 0.0, None)
    envs_dir = envs_dir or settings.envs_dir
    if environment.is_container:
        from prefect_mltrain.environments.docker_build import build_image

        return build_image(environment, spec, digest, envs_dir, _logger())
    prefix = envs_dir / digest[:16]
    marker = _read_marker(prefix)
    if marker is not None:
        return BuiltEnvironment(**{**marker["built"], "cached": True})
    log = _logger()
    with exclusive(envs_dir / f"{digest[:16]}.lock"):
        marker = _read_marker(prefix)  # another worker may have built it while we waited
        if marker is not None:
            return BuiltEnvironment(**{**marker["built"], "cached": True})
        if prefix.exists():
            log.warning("Removing the unfinished build at %s (its builder died).", prefix)
            shutil.rmtree(prefix)
        log.info("Building %s environment %s in %s", spec["kind"], digest[:16], prefix)
        started = time.perf_counter()
        try:
            used = _build_into(prefix, environment, spec, installer or settings.installer, log)
        except BaseException:
            shutil.rmtree(prefix, ignore_errors=True)
            raise
        built = BuiltEnvironment(
            digest,
            spec["kind"],
            str(prefix / "bin" / "python"),
            str(prefix),
            False,
            round(time.perf_counter() - started, 3),
            used,
        )
        tmp = prefix / (MARKER + ".tmp")
        tmp.write_text(json.dumps({"spec": spec, "built": asdict(built)}, indent=2))
        os.replace(tmp, prefix / MARKER)  # the build counts from this rename on
        log.info("Built environment %s in %.1f s with %s", digest[:16], built.build_seconds, used)
        return built
