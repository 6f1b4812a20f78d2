"""Build a Docker `TrainingEnvironment` once per engine: tagged by content hash, locked, logged live.

The image is built untagged; only a successful build (and push, when a registry is set) is
tagged `prefect-mltrain-env:<hash16>`, so a failed or killed build leaves no tag a later run
could pick up. The tag is the cache: a hit is one `docker image inspect`.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_mltrain.errors import EnvironmentBuildError
from prefect_mltrain.system.docker_engine import (
    docker_client,
    login,
    redact,
    registry_auth,
    registry_host,
)

if TYPE_CHECKING:
    from prefect_mltrain.blocks.environment import TrainingEnvironment

IMAGE_REPOSITORY = "prefect-mltrain-env"
HASH_LABEL = "org.prefect-mltrain.content-hash"
VENV = "/opt/mltrain-env"
_CA_CANDIDATES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def image_tag(digest: str) -> str:
    """The local tag of the environment with content hash `digest`.

    >>> image_tag("0123456789abcdef" + "0" * 48)
    'prefect-mltrain-env:0123456789abcdef'
    """
    return f"{IMAGE_REPOSITORY}:{digest[:16]}"


def _host_ca_bundle() -> Path | None:
    """This machine's CA bundle, copied into pip builds so intercepted TLS verifies inside."""
    for name in _CA_CANDIDATES:
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def packages_dockerfile(spec: dict[str, Any], requirements: list[str], has_ca: bool) -> str:
    """The Dockerfile that installs `requirements` into a virtualenv on top of the base image.

    A virtualenv, because Debian-based images refuse `pip install` into the system Python
    (PEP 668); jobs find it first on PATH.

    >>> print(packages_dockerfile({"base_image_id": "sha256:ab", "python_version": None}, ["numpy==2.*"], False))
    FROM sha256:ab
    RUN python3 -m venv /opt/mltrain-env \\
     && /opt/mltrain-env/bin/pip install --no-cache-dir --disable-pip-version-check --progress-bar off 'numpy==2.*'
    ENV PATH=/opt/mltrain-env/bin:$PATH VIRTUAL_ENV=/opt/mltrain-env
    """
    lines = [f"FROM {spec['base_image_id']}"]
    cert = ""
    if has_ca:
        lines.append("COPY mltrain-build-ca.crt /etc/prefect-mltrain/build-ca.crt")
        cert = "PIP_CERT=/etc/prefect-mltrain/build-ca.crt "
    if spec.get("python_version"):
        want = spec["python_version"]
        lines.append(
            "RUN python3 -c "
            + shlex.quote(
                "import sys; v='%d.%d.%d' % sys.version_info[:3]; "
                f"ok = v == {want!r} or v.startswith({want + '.'!r}); "
                f"print('python_version={want} is asked for, but the base image has Python ' + v "
                "+ '. Fix: pick a base image with that Python.') if not ok else None; "
                "sys.exit(0 if ok else 1)"
            )
        )
    install = f"{cert}{VENV}/bin/pip install --no-cache-dir --disable-pip-version-check --progress-bar off"
    if spec.get("index_url"):
        install += f" --extra-index-url {shlex.quote(spec['index_url'])}"
    quoted = " ".join(shlex.quote(r) for r in requirements)
    lines.append(f"RUN python3 -m venv {VENV} \\\n && {install} {quoted}".rstrip())
    lines.append(f"ENV PATH={VENV}/bin:$PATH VIRTUAL_ENV={VENV}")
    return "\n".join(lines)


class _BuildLog:
    """Turns the engine's JSON build stream into log lines; remembers the step and the tail."""

    def __init__(self, log: Any, secrets: list[str | None]) -> None:
        self.log = log
        self.secrets = secrets
        self.step = ""
        self.tail: list[str] = []
        self.image_id: str | None = None
        self.error: str | None = None
        self._partial = ""

    def feed(self, chunk: dict[str, Any]) -> None:
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = redact(str(detail.get("message") or chunk.get("error")), self.secrets)
        text = self._partial + str(chunk.get("stream") or "")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line)
        if "status" in chunk:  # pull/push progress
            self._line(" ".join(str(chunk[k]) for k in ("id", "status", "progress") if chunk.get(k)))

    def _line(self, line: str) -> None:
        line = redact(line.rstrip("\r"), self.secrets)
        if not line.strip():
            return
        if line.startswith("Step ") and " : " in line:
            self.step = line
            self.tail = []
        self.tail = (self.tail + [line])[-25:]
        self.log.info("%s", line)

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""


def _run_build(client: Any, log: Any, secrets: list[str | None], **kwargs: Any) -> str:
    """Run one `docker build` through the engine API, streaming; return the image id."""
    stream = _BuildLog(log, secrets)
    for chunk in client.api.build(decode=True, rm=True, forcerm=True, network_mode="host", **kwargs):
        stream.feed(chunk)
    stream.close()
    if stream.error or not stream.image_id:
        tail = "\n".join(stream.tail) or "(no output)"
        raise EnvironmentBuildError(
            f"The Docker build failed at `{stream.step or 'the first step'}`: "
            f"{stream.error or 'the engine reported no image'}. Last output of that step:\n{tail}\n"
            f"Fix: correct that step (run `docker build` on the same Dockerfile to iterate); "
            f"nothing was tagged, so the next run builds again."
        )
    return stream.image_id


def _push(client: Any, environment: TrainingEnvironment, image: Any, digest: str, log: Any) -> str:
    """Tag `image` for the registry and push it; return the pushed reference."""
    password = environment.registry_password.get_secret_value() if environment.registry_password else None
    url = environment.registry_url or ""
    repository = f"{registry_host(url)}/{IMAGE_REPOSITORY}"
    image.tag(repository, tag=digest[:16])
    log.info("Pushing %s:%s", repository, digest[:16])
    stream = _BuildLog(log, [password])
    auth = registry_auth(url, environment.registry_username, password)
    for chunk in client.api.push(repository, tag=digest[:16], stream=True, decode=True, auth_config=auth):
        stream.feed(chunk)
    if stream.error:
        client.images.remove(f"{repository}:{digest[:16]}", noprune=True)
        raise EnvironmentBuildError(
            f"Pushing {repository}:{digest[:16]} to `registry_url`={url!r} failed: {stream.error}. "
            f"Fix: check the registry address and that `registry_username` may push there."
        )
    return f"{repository}:{digest[:16]}"


def build_image(environment: TrainingEnvironment, spec: dict[str, Any], digest: str, envs_dir: Path, log: Any) -> Any:
    """Build (or find) the image of a `docker`/`dockerfile` environment.

    Args:
        environment: The spec; `kind` is `docker` or `dockerfile`.
        spec: `environment.spec()`, already computed.
        digest: Its content hash.
        envs_dir: Folder of the lock files (shared with virtualenv builds).
        log: Logger that receives every build output line.

    Returns:
        A `BuiltEnvironment` whose `image` is the tag (or, for an image used as is, its id).

    Raises:
        EnvironmentBuildError: The build or push failed; nothing was tagged.
    """
    from prefect_mltrain.environments.build import BuiltEnvironment
    from prefect_mltrain.system.files import exclusive

    client = docker_client()
    if spec["kind"] == "docker" and not spec["pip_requirements"] and not spec.get("conda"):
        # User-managed image: jobs run in it as is, by id so a moved tag cannot change it.
        return BuiltEnvironment(digest, "docker", "python3", None, True, 0.0, None, spec["base_image_id"])
    tag = image_tag(digest)
    python = f"{VENV}/bin/python" if spec["kind"] == "docker" else "python3"

    def cached() -> Any:
        found = client.images.list(name=tag)
        if found and (found[0].labels or {}).get(HASH_LABEL) == digest:
            return BuiltEnvironment(digest, spec["kind"], python, None, True, 0.0, "docker", tag)
        return None

    hit = cached()
    if hit is not None:
        return hit
    envs_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(envs_dir / f"{digest[:16]}.docker.lock"):
        hit = cached()  # another worker may have built it while we waited
        if hit is not None:
            return hit
        password = environment.registry_password.get_secret_value() if environment.registry_password else None
        if environment.registry_url and (environment.registry_username or password):
            # Check the credentials before a long build whose push they would fail.
            login(client, environment.registry_url, environment.registry_username, password)
        log.info("Building %s environment %s as image %s", spec["kind"], digest[:16], tag)
        started = time.perf_counter()
        image_id = _build(client, environment, spec, digest, password, log)
        image = client.images.get(image_id)
        try:
            if environment.registry_url:
                _push(client, environment, image, digest, log)
        except BaseException:
            client.images.remove(image_id, force=True)
            raise
        image.tag(IMAGE_REPOSITORY, tag=digest[:16])  # the build counts from this tag on
        seconds = round(time.perf_counter() - started, 3)
        log.info("Built image %s (%s) in %.1f s", tag, image_id[:19], seconds)
        return BuiltEnvironment(digest, spec["kind"], python, None, False, seconds, "docker", tag)


def _build(
    client: Any, environment: TrainingEnvironment, spec: dict[str, Any], digest: str, password: str | None, log: Any
) -> str:
    """Build the image of `environment` in a scratch folder, labelled with its hash; return the image id.

    A `docker` environment is its base image with the packages installed (a Dockerfile written
    here, with the host's CA bundle when it has one); a `dockerfile` environment is the user's
    Dockerfile, in its own context.
    """
    from prefect_mltrain.environments.build import _pip_plan

    labels = {HASH_LABEL: digest}
    with tempfile.TemporaryDirectory(prefix="mltrain-docker-") as scratch:
        if spec["kind"] == "docker":
            ca = _host_ca_bundle()
            if ca is not None:
                (Path(scratch) / "mltrain-build-ca.crt").write_bytes(ca.read_bytes())
            dockerfile = packages_dockerfile(spec, _pip_plan(environment, spec), ca is not None)
            (Path(scratch) / "Dockerfile").write_text(dockerfile + "\n")
            return _run_build(client, log, [password], path=scratch, labels=labels)
        text, path, context = environment.dockerfile_text()
        if path is None:
            path = Path(scratch) / "Dockerfile.mltrain"
            path.write_text(text)
        return _run_build(
            client,
            log,
            [password],
            path=str(context or scratch),
            dockerfile=str(path),
            labels=labels,
        )
