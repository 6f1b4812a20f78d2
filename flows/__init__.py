"""Flows: every one is deployable and usable as a subflow."""

from prefect_mltrain.flows.score_image_model import ScoreResult, score_image_model
from prefect_mltrain.flows.train_job import JobResult, train_job
from prefect_mltrain.flows.train_pytorch import PytorchTrainResult, train_pytorch_model
from prefect_mltrain.flows.train_sklearn import FitResult, train_sklearn

__all__ = [
    "FitResult",
    "JobResult",
    "PytorchTrainResult",
    "ScoreResult",
    "score_image_model",
    "train_job",
    "train_pytorch_model",
    "train_sklearn",
]
