"""Docker environments: identity, builds, cache, failures and secrets, on the real engine."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from _docker import BASE_IMAGE, flow_run_log_text, requires_docker
from prefect import flow
from pydantic import SecretStr

from prefect_mltrain.blocks import TrainingEnvironment
from prefect_mltrain.environments.build import build
from prefect_mltrain.errors import DockerUnavailableError, EnvironmentBuildError, EnvironmentSpecError


def _image(tag: str) -> dict[str, str] | None:
    from prefect_mltrain.system.docker_engine import describe_image, docker_client

    return describe_image(docker_client(), tag)


@pytest.fixture
def remove_images():
    """Tags to delete after the test: its images have unique content, so no run reuses them."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def test_import_does_not_import_docker() -> None:
    code = "import sys, prefect_mltrain, prefect_mltrain.blocks; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_docker_extra_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_mltrain.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "docker", None)
    env = TrainingEnvironment(docker_image=BASE_IMAGE, pip_requirements=["six"])
    with pytest.raises(MissingDependencyError, match=r"pip install 'prefect-mltrain\[docker\]'"):
        env.content_hash()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"dockerfile": "FROM x\n", "docker_image": "y"}, ["`dockerfile`", "`docker_image`", "Fix"]),
        ({"docker_image": "y", "python_version": "3.11"}, ["python_version", "'3.11'", "base image"]),
        ({"docker_image": "y", "python_executable": "/usr/bin/python3"}, ["python_executable", "Fix"]),
        ({"docker_image": "y", "registry_password": "s"}, ["registry_url", "Fix"]),
    ],
)
def test_impossible_combinations_are_refused(fields: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        TrainingEnvironment(**fields)
    for word in words:
        assert word in str(info.value)


def test_no_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    env = TrainingEnvironment(docker_image=BASE_IMAGE, pip_requirements=["six"])
    with pytest.raises(DockerUnavailableError) as info:
        env.content_hash()
    message = str(info.value)
    assert "no-engine.sock" in message and "dockerd" in message and ".ci/docker-setup.sh" in message


@requires_docker
def test_identity_follows_spec_dockerfile_and_context(tmp_path: Path) -> None:
    a = TrainingEnvironment(docker_image=BASE_IMAGE, pip_requirements=["Six==1.16.0", "idna"])
    b = TrainingEnvironment(
        docker_image=BASE_IMAGE, pip_requirements=["idna", "six == 1.16.0"], environment_variables={"X": "1"}
    )
    c = TrainingEnvironment(docker_image=BASE_IMAGE, pip_requirements=["six==1.17.0", "idna"])
    assert a.content_hash() == b.content_hash() != c.content_hash()
    assert a.spec()["base_image_id"].startswith("sha256:")

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY app.py /app.py\n")
    (context / "app.py").write_text("print(1)\n")
    (context / ".dockerignore").write_text("scratch/\n*.log\n")
    (context / "scratch").mkdir()
    env = TrainingEnvironment(dockerfile=str(context / "Dockerfile"))
    first = env.content_hash()
    (context / "scratch" / "big.bin").write_bytes(b"ignored")
    (context / "run.log").write_text("ignored")
    assert env.content_hash() == first, ".dockerignore'd files must not change the hash"
    (context / "app.py").write_text("print(2)\n")
    second = env.content_hash()
    assert second != first
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY app.py /app.py\nENV A=1\n")
    assert env.content_hash() not in (first, second)


@requires_docker
def test_build_streams_into_flow_logs_and_cache_hit_does_not_rebuild(remove_images: list[str]) -> None:
    marker = f"built-{uuid.uuid4().hex[:8]}"
    env = TrainingEnvironment(dockerfile=f"FROM {BASE_IMAGE}\nRUN echo {marker} && python3 --version\n")

    @flow
    def build_twice() -> tuple:
        return build(env), build(env)

    state = build_twice(return_state=True)
    cold, warm = state.result()
    remove_images.append(cold.image)
    assert not cold.cached and warm.cached
    assert cold.image == warm.image == f"prefect-mltrain-env:{env.content_hash()[:16]}"
    before = _image(cold.image)
    started = time.perf_counter()
    again = build(env)
    assert time.perf_counter() - started < 1.0
    assert again.cached and _image(cold.image) == before  # same id, same creation time
    logs = flow_run_log_text(state.state_details.flow_run_id, marker)
    assert marker in logs and "Step 2/" in logs


@requires_docker
def test_two_workers_build_the_same_dockerfile_once(tmp_path: Path, remove_images: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "app.py").write_text(f"print('{uuid.uuid4().hex}')\n")
    (tmp_path / "secret.env").write_text("never sent")
    (tmp_path / ".dockerignore").write_text("*.env\n")
    (tmp_path / "Dockerfile").write_text(
        f'FROM {BASE_IMAGE}\nCOPY . /app/\nRUN sleep 1 && test ! -e /app/secret.env\nCMD ["python3", "/app/app.py"]\n'
    )
    env = TrainingEnvironment(dockerfile=str(tmp_path / "Dockerfile"))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: build(env), range(2)))
    remove_images.append(results[0].image)
    assert sorted(r.cached for r in results) == [False, True]
    assert results[0].image == results[1].image
    out = subprocess.run(["docker", "run", "--rm", results[0].image], capture_output=True, text=True)
    assert out.stdout.strip() == (tmp_path / "app.py").read_text().split("'")[1]


@requires_docker
def test_failing_dockerfile_shows_step_and_leaves_no_tag() -> None:
    marker = f"before-failure-{uuid.uuid4().hex[:8]}"
    env = TrainingEnvironment(dockerfile=f"FROM {BASE_IMAGE}\nRUN echo {marker} && exit 3\n")
    with pytest.raises(EnvironmentBuildError) as info:
        build(env)
    message = str(info.value)
    assert "RUN echo" in message and marker in message and "3" in message and "Fix" in message
    assert _image(f"prefect-mltrain-env:{env.content_hash()[:16]}") is None


@requires_docker
def test_conda_python_the_image_lacks_fails_the_build_clearly() -> None:
    env = TrainingEnvironment(
        docker_image=BASE_IMAGE,
        conda_file="name: x\ndependencies:\n  - python=3.9\n  - pip:\n    - six==1.16.0\n",
    )
    with pytest.raises(EnvironmentBuildError) as info:
        build(env)
    message = str(info.value)
    assert "python_version=3.9 is asked for, but the base image has Python 3.11" in message
    assert _image(f"prefect-mltrain-env:{env.content_hash()[:16]}") is None


@requires_docker
def test_missing_image_is_named() -> None:
    env = TrainingEnvironment(docker_image="prefect-mltrain-missing:nope", pip_requirements=["six"])
    with pytest.raises(EnvironmentSpecError) as info:
        env.content_hash()
    assert "'prefect-mltrain-missing:nope'" in str(info.value) and "Fix" in str(info.value)


@requires_docker
def test_built_image_is_pushed_to_the_registry(tmp_path: Path, remove_images: list[str]) -> None:
    import json
    import shutil
    import urllib.request

    from prefect_mltrain.system.net import free_port

    if shutil.which("docker-registry") is None:
        pytest.skip("no `docker-registry` (Debian package); `bash .ci/docker-setup.sh` installs it")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        env = TrainingEnvironment(
            dockerfile=f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex}\n",
            registry_url=f"127.0.0.1:{port}",
        )
        built = build(env)
        remove_images += [built.image, f"127.0.0.1:{port}/{built.image}"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/prefect-mltrain-env/tags/list", timeout=5) as r:
            tags = json.load(r)["tags"]
        assert built.image.split(":")[1] in tags
    finally:
        registry.terminate()
        registry.wait(timeout=10)


class _RefusingRegistry(http.server.BaseHTTPRequestHandler):
    """A registry on loopback that refuses every login, as one does for a wrong password."""

    seen_auth: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _RefusingRegistry.seen_auth.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@requires_docker
def test_wrong_registry_credentials_fail_without_showing_the_secret(prefect_client, unique_name: str) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registry = f"127.0.0.1:{server.server_address[1]}"
    env = TrainingEnvironment(
        dockerfile=f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex}\n",
        registry_url=registry,
        registry_username="alice",
        registry_password=SecretStr(secret),
    )

    @flow
    def build_with_registry() -> None:
        build(env)

    try:
        state = build_with_registry(return_state=True)
    finally:
        server.shutdown()
    assert state.is_failed()
    with pytest.raises(EnvironmentSpecError) as info:
        state.result()
    message = str(info.value)
    assert registry in message and "alice" in message and "registry_password" in message
    assert "refused the credentials" in message
    assert any(h.startswith("Basic") for h in _RefusingRegistry.seen_auth), "the engine never sent them"
    assert secret not in message
    assert secret not in flow_run_log_text(state.state_details.flow_run_id, wait=2)
    assert _image(f"prefect-mltrain-env:{env.content_hash()[:16]}") is None

    env.save(unique_name)
    # Listings (UI, CLI) read documents without secrets; only `load()` asks for them.
    listed = prefect_client.read_block_documents(limit=200, offset=0, include_secrets=False)
    assert unique_name in [doc.name for doc in listed]
    assert secret not in repr(listed) and secret not in str([doc.model_dump() for doc in listed])
    assert secret not in repr(env) and secret not in str(env.model_dump())


@requires_docker
def test_an_unreachable_registry_is_not_called_a_refusal() -> None:
    from prefect_mltrain.system.net import free_port

    port = free_port()  # nothing listens there
    env = TrainingEnvironment(
        dockerfile=f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex}\n",
        registry_url=f"127.0.0.1:{port}",
        registry_username="alice",
        registry_password=SecretStr("not-checked"),
    )
    with pytest.raises(EnvironmentSpecError, match=rf"The registry '127.0.0.1:{port}' cannot be reached") as info:
        build(env)
    assert "refused" not in str(info.value).split("(")[0] and "not-checked" not in str(info.value)
    assert _image(f"prefect-mltrain-env:{env.content_hash()[:16]}") is None
