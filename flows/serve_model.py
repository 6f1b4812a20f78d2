"""`serve_model` / `stop_model_server`: a registered model as a local HTTP scoring service."""

from __future__ import annotations

from prefect.logging import get_run_logger

from prefect_mltrain.blocks.model import RegisteredModel
from prefect_mltrain.flows._embedded import flow
from prefect_mltrain.registry import serving


@flow(name="serve-model")
def serve_model(model_name: str, version: int | None = None, port: int | None = None, host: str = "127.0.0.1") -> str:
    """Start MLflow's scoring server for a registered model and return its URL.

    Score with `POST <url>/invocations` and a JSON body such as
    `{"inputs": [[5.1, 3.5, 1.4, 0.2]]}`; `GET <url>/ping` answers 200 while it is up.

    Args:
        model_name: The RegisteredModel's name.
        version: The version to serve; the newest when None.
        port: TCP port; a free one when None.
        host: Interface to listen on.
    """
    server = serving.serve(RegisteredModel.version_of(model_name, version), port, host)
    get_run_logger().info(
        "Serving %s v%d at %s (pid %d, log %s)", model_name, server.version, server.url, server.pid, server.log
    )
    return server.url


@flow(name="stop-model-server")
def stop_model_server(model_name: str) -> bool:
    """Stop the scoring server of `model_name`; return whether one was running."""
    return serving.stop(model_name)
