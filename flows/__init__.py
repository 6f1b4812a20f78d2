"""Flows: every one is deployable and usable as a subflow."""

from prefect_mltrain._compat import heartbeats as _heartbeats
from prefect_mltrain.flows.run_job_file import run_job_file
from prefect_mltrain.flows.score_image_model import ScoreResult, score_image_model
from prefect_mltrain.flows.serve_model import serve_model, stop_model_server
from prefect_mltrain.flows.sweep import SweepResult, sweep
from prefect_mltrain.flows.train_job import JobResult, train_job
from prefect_mltrain.flows.train_pytorch import PytorchTrainResult, train_pytorch_model
from prefect_mltrain.flows.train_sklearn import FitResult, train_sklearn


def use_fast_heartbeats() -> bool:
    """Make every flow run in this process return when its body ends, not up to a second later.

    Prefect 3.8's flow-run heartbeat thread sleeps in whole seconds and a sync flow run joins
    it on exit. This replaces it, process-wide (your own flows too), with one that beats at the
    same interval and stops at once (`prefect_mltrain._compat.heartbeats`). Nothing installs it
    on import; the `prefect-mltrain` CLI calls this. Returns whether it is in use (False on a
    Prefect release it was not written for, where Prefect's own thread is kept).
    """
    return _heartbeats.install()


__all__ = [
    "FitResult",
    "JobResult",
    "PytorchTrainResult",
    "ScoreResult",
    "SweepResult",
    "run_job_file",
    "score_image_model",
    "serve_model",
    "stop_model_server",
    "sweep",
    "train_job",
    "train_pytorch_model",
    "train_sklearn",
    "use_fast_heartbeats",
]
