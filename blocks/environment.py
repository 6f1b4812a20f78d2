"""`TrainingEnvironment`: the Python a job runs in, defined once and identified by a content hash."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from prefect_mltrain.environments.spec import (
    _PYTHON_VERSION,
    _normalise_requirement,
    hash_spec,
    parse_conda_file,
)
from prefect_mltrain.errors import EnvironmentSpecError


class TrainingEnvironment(Block):
    """The software a training job runs in: pip/conda packages, a Docker image or Dockerfile.

    Kinds (see `kind`): `pip` and `conda` build a virtualenv; `user-managed` runs a given
    Python as is; `docker` installs pip/conda packages on top of `docker_image` (or, with no
    packages, runs in that image as is); `dockerfile` builds `dockerfile` in `docker_context`.

    Defined once and reused; its identity is a content hash over the normalised spec, so the
    same spec is built once per machine and every later job reuses the build.

    Example:
        ```python
        from prefect_mltrain.blocks import TrainingEnvironment

        TrainingEnvironment(pip_requirements=["scikit-learn==1.9.1"]).save("sklearn-env")
        env = TrainingEnvironment.load("BLOCK_NAME")

        TrainingEnvironment(
            docker_image="prefect-mltrain-base:bookworm", pip_requirements=["mlflow-skinny"],
        ).save("docker-env")
        ```
    """

    _block_type_name = "Training Environment"
    _logo_url = None  # type: ignore[assignment]
    _description = "A Python environment for training jobs, built once and cached by content hash."

    python_version: str | None = Field(
        default=None,
        title="Python version",
        description="Python for a built environment, e.g. `3.11`; empty means the Python "
        "running the flow. The machine must have it.",
    )
    pip_requirements: list[str] = Field(
        default_factory=list,
        title="Pip requirements",
        description="Requirement specifiers installed into a fresh virtualenv, e.g. "
        '`["scikit-learn==1.9.1", "pandas"]`.',
    )
    pip_requirements_file: str | None = Field(
        default=None,
        title="Requirements file",
        description="Path of a requirements.txt whose lines are added to `pip_requirements`.",
    )
    conda_file: str | None = Field(
        default=None,
        title="Conda file",
        description="Path of a conda environment YAML, or its text. Built with conda, mamba or "
        "micromamba when present, otherwise translated to pip where the mapping is sure.",
    )
    python_executable: str | None = Field(
        default=None,
        title="Python executable",
        description="User-managed: run jobs with this interpreter as is, building nothing. "
        "When no spec is given at all, the interpreter running the flow is used.",
    )
    environment_variables: dict[str, str] = Field(
        default_factory=dict,
        title="Environment variables",
        description="Variables set for the job's process; they do not change the content hash.",
    )
    index_password: SecretStr | None = Field(
        default=None,
        title="Package index password",
        description="Password or token for a private package index; never logged or hashed.",
    )
    index_username: str | None = Field(
        default=None,
        title="Package index username",
        description="Username for `index_url`; `__token__` when only a password is given.",
    )
    index_url: str | None = Field(
        default=None,
        title="Package index URL",
        description="Extra package index, e.g. `https://pypi.internal/simple`.",
    )

    docker_image: str | None = Field(
        default=None,
        title="Docker image",
        description="Base image, e.g. `python:3.11-slim`. With pip/conda packages they are "
        "installed on top into /opt/mltrain-env; alone, jobs run in the image as is.",
    )
    dockerfile: str | None = Field(
        default=None,
        title="Dockerfile",
        description="Path of a Dockerfile, or its text; built with `docker_context`.",
    )
    docker_context: str | None = Field(
        default=None,
        title="Docker build context",
        description="Folder sent to the build (its `.dockerignore` is honoured); defaults to "
        "the Dockerfile's folder, or an empty context for Dockerfile text.",
    )
    registry_url: str | None = Field(
        default=None,
        title="Registry",
        description="Docker registry, e.g. `registry.example:5000/team`; when set, built "
        "images are pushed there and base images are pulled with its credentials.",
    )
    registry_username: str | None = Field(
        default=None,
        title="Registry username",
        description="Username for `registry_url`.",
    )
    registry_password: SecretStr | None = Field(
        default=None,
        title="Registry password",
        description="Password or token for `registry_url`; never logged, hashed or shown.",
    )

    @model_validator(mode="after")
    def _check_combination(self) -> TrainingEnvironment:
        builds = bool(self.pip_requirements or self.pip_requirements_file or self.conda_file)
        if self.python_executable and (builds or self.docker_image or self.dockerfile):
            raise ValueError(
                "`python_executable` (a user-managed environment) cannot be combined with "
                "`pip_requirements`, `pip_requirements_file`, `conda_file`, `docker_image` or "
                "`dockerfile`. Fix: keep one."
            )
        if self.dockerfile and (builds or self.docker_image):
            raise ValueError(
                "`dockerfile` cannot be combined with `docker_image`, `pip_requirements`, "
                "`pip_requirements_file` or `conda_file`. Fix: install the packages in the "
                "Dockerfile itself, or drop `dockerfile` and use `docker_image` plus packages."
            )
        if self.docker_context and not self.dockerfile:
            raise ValueError(
                f"`docker_context`={self.docker_context!r} is only used with `dockerfile`. "
                f"Fix: set `dockerfile`, or remove `docker_context`."
            )
        if self.python_version is not None and (self.docker_image or self.dockerfile):
            raise ValueError(
                f"`python_version`={self.python_version!r} cannot be honoured for a Docker "
                f"environment: the image decides the Python. Fix: remove `python_version` and "
                f"pick a base image with that Python."
            )
        if self.index_password is not None and (self.docker_image or self.dockerfile):
            raise ValueError(
                "`index_password` is not supported for Docker environments: without BuildKit "
                "secrets it would be stored in the image's layers. Fix: use a public "
                "`index_url`, or install private packages in a base image built elsewhere."
            )
        if (self.registry_username or self.registry_password) and not self.registry_url:
            raise ValueError(
                "`registry_username`/`registry_password` are given but `registry_url` is empty. "
                "Fix: set `registry_url`, e.g. 'registry.example:5000/team'."
            )
        if self.python_version is not None and not _PYTHON_VERSION.match(self.python_version):
            raise ValueError(f"`python_version` must look like '3.11' or '3.11.7', but got {self.python_version!r}.")
        return self

    @property
    def kind(self) -> str:
        """`dockerfile`, `docker`, `conda`, `pip` or `user-managed`."""
        if self.dockerfile:
            return "dockerfile"
        if self.docker_image:
            return "docker"
        if self.conda_file:
            return "conda"
        if self.pip_requirements or self.pip_requirements_file:
            return "pip"
        return "user-managed"

    @property
    def is_container(self) -> bool:
        """Whether jobs in this environment run in a Docker container."""
        return self.kind in ("docker", "dockerfile")

    def _conda_text(self) -> tuple[str, str]:
        if self.conda_file is None:
            raise EnvironmentSpecError("`conda_file` is empty; this environment has no conda file.")
        path = Path(self.conda_file).expanduser()
        if not path.is_file() and ("\n" in self.conda_file or ":" in self.conda_file):
            return self.conda_file, "given as text"
        if not path.is_file():
            raise EnvironmentSpecError(
                f"`conda_file`={self.conda_file!r} does not exist. Fix: give the path of a "
                f"conda environment YAML, or its text."
            )
        return path.read_text(), f"'{path}'"

    def spec(self) -> dict[str, Any]:
        """The normalised spec: what a build depends on, with files read and requirements sorted.

        Raises:
            EnvironmentSpecError: A file is missing or does not parse.
        """
        if self.kind == "user-managed":
            return {"kind": "user-managed", "python": self.python_executable or sys.executable}
        if self.kind == "dockerfile":
            return self._dockerfile_spec()
        requirements = list(self.pip_requirements)
        if self.pip_requirements_file:
            requirements += self._requirements_file_lines()
        python_version = self.python_version
        spec: dict[str, Any] = {"kind": self.kind}
        if self.conda_file:
            text, origin = self._conda_text()
            conda = parse_conda_file(text, origin)
            python_version = python_version or conda["python_version"]
            requirements += conda["pip_requirements"]
            spec["conda"] = {
                k: conda[k] for k in ("conda_dependencies", "channels", "pip_translated", "untranslatable")
            }
        spec["python_version"] = python_version
        spec["pip_requirements"] = sorted({_normalise_requirement(r) for r in requirements if r.strip()})
        if self.index_url:
            spec["index_url"] = self.index_url
        if self.kind == "docker":
            # The base image's id, not its name: a re-pushed `:latest` is a new environment.
            spec["base_image"] = self.docker_image
            spec["base_image_id"] = self._image_ids([self.docker_image or ""])[self.docker_image or ""]
        return spec

    def dockerfile_text(self) -> tuple[str, Path | None, Path | None]:
        """The Dockerfile's text, its path (None for text) and the build context folder.

        Raises:
            EnvironmentSpecError: The Dockerfile or the context folder does not exist.
        """
        value = self.dockerfile or ""
        path: Path | None = None
        if "\n" in value:
            text = value
        else:
            path = Path(value).expanduser().resolve()
            if not path.is_file():
                raise EnvironmentSpecError(
                    f"`dockerfile`={value!r} does not exist. Fix: give the path of a Dockerfile, "
                    f"or its text (with at least one newline)."
                )
            text = path.read_text()
        context: Path | None = None
        if self.docker_context:
            context = Path(self.docker_context).expanduser().resolve()
        elif path is not None:
            context = path.parent
        if context is not None and not context.is_dir():
            raise EnvironmentSpecError(
                f"`docker_context`={self.docker_context!r} is not a directory. Fix: give the "
                f"folder whose files the Dockerfile COPYs."
            )
        return text, path, context

    def _dockerfile_spec(self) -> dict[str, Any]:
        from prefect_mltrain.system.docker_engine import (
            context_digest,
            dockerfile_base_images,
        )

        text, path, context = self.dockerfile_text()
        name = path.relative_to(context).as_posix() if path and context and path.is_relative_to(context) else None
        bases = dockerfile_base_images(text)
        return {
            "kind": "dockerfile",
            "dockerfile_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "context_sha256": context_digest(context, name) if context else None,
            "base_image_ids": self._image_ids(bases),
        }

    def _image_ids(self, names: list[str]) -> dict[str, str]:
        """Ids of the base images, pulled with the registry credentials when not local."""
        from prefect_mltrain.system.docker_engine import (
            docker_client,
            image_id,
            registry_auth,
        )

        client = docker_client()
        password = self.registry_password.get_secret_value() if self.registry_password else None
        auth = registry_auth(self.registry_url, self.registry_username, password)
        return {name: image_id(client, name, auth, [password]) for name in names}

    def content_hash(self) -> str:
        """SHA-256 over the normalised spec: equal on every machine for equal specs.

        Environment variables and secrets are left out: they do not change what is built.
        Docker environments add their base images' ids and, for a Dockerfile, the files of
        its build context, so they need the Docker engine.
        """
        return hash_spec(self.spec())

    def portable(self) -> TrainingEnvironment:
        """This environment with its files read in, so that a worker on another machine can build it.

        `conda_file` and `pip_requirements_file` name files on the flow's machine: the copy
        holds their text instead (the conda YAML as `conda_file` text, the requirements file's
        lines in `pip_requirements`), and has the same content hash. A Dockerfile and its build
        context stay paths: the workers that build it must have them.

        Raises:
            EnvironmentSpecError: A file is missing.
        """
        update: dict[str, Any] = {}
        if self.conda_file:
            text, origin = self._conda_text()
            if origin != "given as text":
                update["conda_file"] = text
        if self.pip_requirements_file:
            update["pip_requirements"] = [*self.pip_requirements, *self._requirements_file_lines()]
            update["pip_requirements_file"] = None
        return self.model_copy(update=update) if update else self

    def _requirements_file_lines(self) -> list[str]:
        path = Path(self.pip_requirements_file or "").expanduser()
        if not path.is_file():
            raise EnvironmentSpecError(
                f"`pip_requirements_file`={self.pip_requirements_file!r} does not exist. "
                f"Fix: give the path of a requirements.txt."
            )
        return [line for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]

    def job_environment(self) -> dict[str, str]:
        """The variables this environment adds to a job's process."""
        return {str(k): str(v) for k, v in self.environment_variables.items()}
