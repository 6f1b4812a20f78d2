"""Flows: every one is deployable and usable as a subflow."""

from prefect_mltrain import heartbeats as _heartbeats
from prefect_mltrain.flows.run_job_file import run_job_file
from prefect_mltrain.flows.score_image_model import ScoreResult, score_image_model
from prefect_mltrain.flows.serve_model import serve_model, stop_model_server
from prefect_mltrain.flows.sweep import SweepResult, sweep
from prefect_mltrain.flows.train_job import JobResult, train_job
from prefect_mltrain.flows.train_pytorch import PytorchTrainResult, train_pytorch_model
from prefect_mltrain.flows.train_sklearn import FitResult, train_sklearn

_heartbeats.install()  # flow runs return when their body ends, not up to a second later

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
]
