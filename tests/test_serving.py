"""Registered models served over real HTTP by MLflow's scoring server."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from prefect_mltrain.blocks import RegisteredModel
from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.flows import serve_model, stop_model_server, train_sklearn
from prefect_mltrain.registry import serving


@pytest.fixture(scope="module")
def iris_model(compute):
    name = "serve-iris"
    train_sklearn(dataset="iris", params={"max_iter": 300}, model_name=name, compute=compute)
    yield name
    serving.stop(name)


def test_serve_score_and_stop(iris_model):
    url = serve_model(iris_model)
    try:
        ok = httpx.post(f"{url}/invocations", json={"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}, timeout=30)
        assert ok.status_code == 200 and ok.json()["predictions"] == [0, 2]
        bad = httpx.post(
            f"{url}/invocations", content=b"{not json", headers={"Content-Type": "application/json"}, timeout=30
        )
        assert bad.status_code == 400 and "error_code" in bad.json()
        with pytest.raises(ConfigurationError, match=f"already served at {url}"):
            serving.serve(RegisteredModel.version_of(iris_model))
    finally:
        assert stop_model_server(iris_model) is True
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/ping", timeout=2)


def test_cli_model_list_show(iris_model):
    exe = str(Path(sys.executable).with_name("prefect-mltrain"))
    listed = subprocess.run([exe, "model", "list"], capture_output=True, text=True, env=os.environ, timeout=120)
    assert any(line.startswith(iris_model) and "sklearn" in line for line in listed.stdout.splitlines())
    shown = subprocess.run(
        [exe, "model", "show", iris_model, "--version", "1"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert '"model_uri": "models:/serve-iris/1"' in shown.stdout
