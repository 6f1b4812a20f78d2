"""The Docker work pool as a user runs it: prefect-docker builds and pushes the image (`prefect
deploy` with deployments/docker/prefect.yaml), `prefect worker start --type docker` runs the
flows in containers, `prefect deployment run --watch` waits for them.

The image is built once per module; its dependency layer is kept (tagged
`prefect-mltrain-worker:test-cache`), so a rerun rebuilds only the code layer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from _docker import BASE_IMAGE, flow_run_log_text, requires_docker
from _workers import ROOT, prefect_cli, wait_for, worker

pytestmark = [requires_docker, pytest.mark.slow]

POOL = "mltrain-docker"
PREFECT_FILE = "deployments/docker/prefect.yaml"
CACHE_TAG = "prefect-mltrain-worker:test-cache"


def _flow_run_id(cli_output: str) -> uuid.UUID:
    match = re.search(r"UUID: ([0-9a-f-]{36})", cli_output)
    assert match, f"no flow run id in:\n{cli_output}"
    return uuid.UUID(match.group(1))


def _containers_of(flow_run_id: uuid.UUID) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=io.prefect.flow-run-id={flow_run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _start_registry(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The loopback registry; its storage is kept between sessions, so a rerun pushes only new layers."""
    from prefect_mltrain.system.net import free_port

    port = free_port()
    storage = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prefect-mltrain" / "test-registry"
    storage.mkdir(parents=True, exist_ok=True)
    config = tmp / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return registry, port
        except OSError:
            time.sleep(0.1)
    registry.kill()
    raise AssertionError("the loopback docker-registry did not start")


def _image_id(ref: str) -> str | None:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def _keep_as_cache(image: str) -> None:
    """Tag `image` as the cache of the next session's build; drop the previous cache image."""
    previous = _image_id(CACHE_TAG)
    subprocess.run(["docker", "tag", image, CACHE_TAG], check=True)
    if previous and previous != _image_id(image):
        subprocess.run(["docker", "rmi", previous], capture_output=True)  # fails harmlessly if in use


@pytest.fixture(scope="module")
def docker_pool(tmp_path_factory: pytest.TempPathFactory):
    """The image built and pushed by `prefect deploy`, the deployments, a docker worker."""
    if shutil.which("docker-registry") is None:
        pytest.skip("no `docker-registry` (Debian package); `bash .ci/docker-setup.sh` installs it")
    tmp = tmp_path_factory.mktemp("docker-pool")
    registry, port = _start_registry(tmp)
    # Where TLS is intercepted the image's pip needs this machine's CA bundle (Dockerfile).
    ca, made_ca = ROOT / ".build-ca.crt", False
    system_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if system_ca.exists() and not ca.exists():
        shutil.copyfile(system_ca, ca)
        made_ca = True
    tag = f"test-{uuid.uuid4().hex[:8]}"
    image = f"127.0.0.1:{port}/prefect-mltrain-worker:{tag}"
    timings: dict[str, float] = {}
    try:
        prefect_cli("work-pool", "create", POOL, "--type", "docker", "--overwrite")
        started = time.monotonic()
        out = prefect_cli(
            "deploy",
            "--all",
            "--prefect-file",
            PREFECT_FILE,
            timeout=900,
            MLTRAIN_REGISTRY=f"127.0.0.1:{port}",
            MLTRAIN_IMAGE_TAG=tag,
            PREFECT_MLTRAIN_BASE_IMAGE=BASE_IMAGE,
        )
        timings["deploy (build + push)"] = time.monotonic() - started
        print(f"prefect deploy (image build + push): {timings['deploy (build + push)']:.1f} s")
        _keep_as_cache(image)
        with worker(POOL, "docker", tmp) as docker_worker:
            yield {"image": image, "port": port, "tag": tag, "deploy_output": out.stdout, "worker": docker_worker}
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        subprocess.run(["docker", "rmi", image], capture_output=True)
        if made_ca:
            ca.unlink(missing_ok=True)


def test_prefect_deploy_builds_and_pushes_with_prefect_docker_steps(docker_pool, prefect_client) -> None:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{docker_pool['port']}/v2/prefect-mltrain-worker/tags/list", timeout=5
    ) as answer:
        assert docker_pool["tag"] in json.load(answer)["tags"]
    deployment = prefect_client.read_deployment_by_name("train-job/iris-docker")
    assert deployment.work_pool_name == POOL
    assert deployment.job_variables["image"] == docker_pool["image"]
    assert deployment.job_variables["network_mode"] == "host"
    # No build container is left behind (rm / forcerm in the build step).
    leftovers = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", "status=exited", "--filter", f"ancestor={docker_pool['image']}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert leftovers.stdout.split() == []


def test_train_job_deployment_runs_in_a_container(docker_pool, prefect_client, unique_name: str) -> None:
    started = time.monotonic()
    out = prefect_cli(
        "deployment",
        "run",
        "train-job/iris-docker",
        "--param",
        f"model_name={unique_name}",
        "--params",
        json.dumps({"arguments": ["--C", "0.25"]}),
        "--watch",
        "--watch-timeout",
        "400",
        timeout=450,
    )
    print(f"train-job in a container: {time.monotonic() - started:.1f} s")
    flow_run_id = _flow_run_id(out.stdout)
    flow_run = prefect_client.read_flow_run(flow_run_id)
    assert flow_run.state.is_completed(), (out.stdout[-3000:], docker_pool["worker"].log()[-3000:])
    # It ran in a container of the pool's image, now removed (auto_remove).
    assert flow_run.infrastructure_pid and ":" in flow_run.infrastructure_pid
    container_id = flow_run.infrastructure_pid.rsplit(":", 1)[1]
    assert container_id
    wait_for(lambda: _containers_of(flow_run_id) == [], timeout=60, what="the finished run's container to go")
    # The script's output reached the flow run's logs through the API.
    assert "test accuracy=" in flow_run_log_text(flow_run_id, must_contain="test accuracy=")
    from prefect_mltrain.blocks import MlflowTracking, RegisteredModel

    entry = RegisteredModel.load(unique_name)
    run = MlflowTracking().client().get_run(entry.mlflow_run_id)
    assert run.data.params["C"] == "0.25" and run.data.metrics["test_accuracy"] > 0.8
    assert run.data.tags["prefect.flow_run_id"] == str(flow_run_id)


def test_sweep_deployment_runs_in_a_container(docker_pool, prefect_client, unique_name: str) -> None:
    started = time.monotonic()
    out = prefect_cli(
        "deployment",
        "run",
        "sweep/iris-docker",
        "--params",
        json.dumps(
            {
                "name": unique_name,
                "limits": {"max_total_trials": 2, "max_concurrent_trials": 2},
                "register_best_model_as": unique_name,
            }
        ),
        "--watch",
        "--watch-timeout",
        "500",
        timeout=550,
    )
    print(f"sweep in a container: {time.monotonic() - started:.1f} s")
    flow_run_id = _flow_run_id(out.stdout)
    assert prefect_client.read_flow_run(flow_run_id).state.is_completed(), out.stdout[-3000:]
    wait_for(lambda: _containers_of(flow_run_id) == [], timeout=60, what="the finished run's container to go")
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    trials = [
        r
        for r in prefect_client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
    ]
    assert len(trials) == 2 and all(t.state.is_completed() for t in trials)
    from prefect_mltrain.blocks import MlflowTracking, RegisteredModel

    best = RegisteredModel.load(unique_name)
    assert best.metrics["accuracy"] > 0.8
    client = MlflowTracking().client()
    parent = client.get_run(client.get_run(best.mlflow_run_id).data.tags["mlflow.parentRunId"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 2


def test_cancelling_a_run_removes_its_container(docker_pool, prefect_client) -> None:
    from prefect.states import Cancelling

    marker = f"started-{uuid.uuid4().hex[:8]}"
    out = prefect_cli(
        "deployment",
        "run",
        "train-job/iris-docker",
        "--params",
        json.dumps(
            {
                "script": None,
                "arguments": [],
                "model_path": None,
                "model_name": None,
                "command": f"python -c \"import time; print('{marker}', flush=True); time.sleep(600)\"",
            }
        ),
    )
    flow_run_id = _flow_run_id(out.stdout)
    # The command is running inside the container.
    flow_run_log_text(flow_run_id, must_contain=marker, wait=300)
    assert marker in flow_run_log_text(flow_run_id, must_contain=marker, wait=1)
    assert _containers_of(flow_run_id), "the flow run's container is not there while it runs"
    started = time.monotonic()
    prefect_client.set_flow_run_state(flow_run_id, Cancelling(), force=True)
    wait_for(
        lambda: prefect_client.read_flow_run(flow_run_id).state.is_cancelled(),
        timeout=120,
        what="the flow run to be Cancelled",
    )
    wait_for(lambda: _containers_of(flow_run_id) == [], timeout=60, what="the container to be removed")
    print(f"cancel to container gone: {time.monotonic() - started:.1f} s")
