"""Talk to the Docker engine: connect, resolve images, hash a build context, redact secrets.

`docker` (docker-py) is imported inside the functions, so `import prefect_mltrain` never
imports it; without the `docker` extra a clear install hint is raised instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_mltrain.errors import DockerUnavailableError, EnvironmentSpecError, missing_extra

if TYPE_CHECKING:
    from docker import DockerClient

START_HINT = (
    "Start one with `sudo dockerd > /tmp/dockerd.log 2>&1 &` (install it with "
    "`apt-get install docker.io`), or run `bash .ci/docker-setup.sh` in the prefect-mltrain "
    "repository, or point DOCKER_HOST at a running engine."
)


def docker_client() -> DockerClient:
    """A docker-py client on the engine of `DOCKER_HOST` (the local socket by default).

    Raises:
        MissingDependencyError: docker-py is not installed.
        DockerUnavailableError: No engine answers; the message says how to start one.
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise missing_extra("docker", "docker") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailableError(
            f"This environment needs a Docker engine, but none answers at {where} ({_first_line(exc)}). {START_HINT}"
        ) from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret in `text` with `***`.

    >>> redact("login as me:hunter2 failed", ["hunter2", None])
    'login as me:*** failed'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def registry_auth(registry_url: str | None, username: str | None, password: str | None) -> dict[str, str] | None:
    """docker-py's `auth_config` for a registry, or None when no credentials are given."""
    if not (username or password):
        return None
    return {"username": username or "", "password": password or "", "serveraddress": registry_url or ""}


def registry_host(registry_url: str) -> str:
    """The `host[:port][/path]` of a registry address, as image names spell it.

    >>> registry_host("https://registry.example:5000/team/")
    'registry.example:5000/team'
    """
    return re.sub(r"^[a-z]+://", "", registry_url).rstrip("/")


#: What Docker says when it cannot reach a registry at all (not a refusal of the credentials).
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|dial tcp|no route to host|network is unreachable|"
    r"context deadline exceeded|server gave HTTP response to HTTPS client",
    re.IGNORECASE,
)


def login(client: DockerClient, registry_url: str, username: str | None, password: str | None) -> None:
    """Check the registry credentials with the engine; never stores them on disk.

    Raises:
        EnvironmentSpecError: The registry refused them (the message holds no secret).
    """
    from docker.errors import APIError

    try:
        client.login(username=username or "", password=password or "", registry=registry_url, reauth=True)
    except APIError as exc:
        reason = redact(_first_line(exc), [password])
        if _UNREACHABLE.search(str(exc)):
            raise EnvironmentSpecError(
                f"The registry {registry_url!r} cannot be reached ({reason}); the credentials were "
                f"not checked. Fix: correct `registry_url` (host:port), or start the registry / check "
                f"the network from this machine (`curl https://{registry_url}/v2/`)."
            ) from None
        raise EnvironmentSpecError(
            f"The registry {registry_url!r} refused the credentials of `registry_username`="
            f"{username!r} ({reason}). Fix: correct `registry_username`/`registry_password` "
            f"(a token for registries that want one) in the TrainingEnvironment block."
        ) from None


def image_id(
    client: DockerClient, name: str, auth_config: dict[str, str] | None = None, secrets: Iterable[str | None] = ()
) -> str:
    """The id (`sha256:...`) of image `name`, pulling it when it is not local.

    Raises:
        EnvironmentSpecError: It is neither local nor pullable.
    """
    from docker.errors import APIError, ImageNotFound

    try:
        return str(client.images.get(name).id)
    except ImageNotFound:
        pass
    repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    try:
        image = client.images.pull(repository, tag=tag, auth_config=auth_config)
        return str(image.id)
    except APIError as exc:
        reason = redact(_first_line(exc), secrets)
        local = sorted(t for img in client.images.list() for t in img.tags)[:10]
        raise EnvironmentSpecError(
            f"The Docker image {name!r} does not exist on this engine and could not be pulled "
            f"({reason}). Fix: check the name and tag (local images: {local or 'none'}), build "
            f"or load it first, or set `registry_url`/`registry_username`/`registry_password` "
            f"for a private registry."
        ) from None


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.I | re.M)


def dockerfile_base_images(text: str) -> list[str]:
    """The images a Dockerfile builds FROM, without its own stages, `scratch` and `${ARG}` names.

    A name made from build arguments is only known to the build, so its id cannot count.

    >>> dockerfile_base_images("FROM python:3.11 AS build\\nRUN x\\nFROM build\\nFROM scratch\\nFROM ${B}")
    ['python:3.11']
    """
    stages: set[str] = set()
    images: list[str] = []
    for match in _FROM.finditer(text):
        image = match.group("image")
        if image.lower() not in stages and image != "scratch" and "$" not in image and image not in images:
            images.append(image)
        if match.group("stage"):
            stages.add(match.group("stage").lower())
    return images


def context_digest(context: Path, dockerfile_name: str | None = None) -> str:
    """SHA-256 over the files of a build context that `docker build` would send.

    Honours the context's `.dockerignore` (the Dockerfile and `.dockerignore` are always
    counted, as Docker always sends them). Paths, contents and the executable bit count;
    timestamps and owners do not, so equal trees hash equally on every machine.
    """
    import pathspec

    ignore_file = context / ".dockerignore"
    patterns: list[str] = []
    if ignore_file.is_file():
        patterns = [
            line.strip().lstrip("/")
            for line in ignore_file.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    spec: Any
    try:
        spec = pathspec.PathSpec.from_lines("gitignore", patterns)
    except (KeyError, LookupError):  # pathspec < 0.12 names it gitwildmatch
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    always = {".dockerignore", dockerfile_name or "Dockerfile"}
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(context).as_posix()
        if rel not in always and spec.match_file(rel):
            continue
        if path.is_symlink():
            payload = b"link:" + os.readlink(path).encode()
        else:
            payload = path.read_bytes()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{rel}\0{executable}\0{len(payload)}\0".encode())
        digest.update(payload)
    return digest.hexdigest()


def describe_image(client: DockerClient, reference: str) -> dict[str, Any] | None:
    """`{"id", "created"}` of a local image, or None when it is not there."""
    from docker.errors import ImageNotFound

    try:
        attrs = client.images.get(reference).attrs
    except ImageNotFound:
        return None
    return {"id": attrs["Id"], "created": attrs["Created"]}
