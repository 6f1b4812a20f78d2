"""Tasks: the Prefect tasks of the package, thin faces over the concept packages.

The logic they run lives in `prefect_mltrain.jobs`, `.environments`, `.estimators`,
`.pytorch` and `.registry`; import plain functions and types from there.
"""

from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.environment import build_environment
from prefect_mltrain.tasks.pytorch_score import score_images
from prefect_mltrain.tasks.pytorch_train import run_distributed, train_pytorch, train_pytorch_rank
from prefect_mltrain.tasks.register import register, register_model
from prefect_mltrain.tasks.sklearn import fit_estimator

__all__ = [
    "build_environment",
    "fit_estimator",
    "register",
    "register_model",
    "run_command",
    "run_distributed",
    "score_images",
    "train_pytorch",
    "train_pytorch_rank",
]
