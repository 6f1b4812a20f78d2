"""Tasks: reusable units of work."""

from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.environment import BuiltEnvironment, build, build_environment, cached_build
from prefect_mltrain.tasks.pytorch_data import ImageDirectory, check_same_classes, scan_image_directory
from prefect_mltrain.tasks.pytorch_model import ImageClassifier, load_model_dir, save_model_dir
from prefect_mltrain.tasks.pytorch_score import score_folder, score_images
from prefect_mltrain.tasks.pytorch_train import (
    RankPlacement,
    TrainConfig,
    place_ranks,
    run_distributed,
    train_process,
    train_pytorch,
    train_pytorch_rank,
)
from prefect_mltrain.tasks.register import register, register_model
from prefect_mltrain.tasks.sklearn import fit_estimator, load_dataset, make_estimator
from prefect_mltrain.tasks.snapshot import Snapshot, snapshot_source

__all__ = [
    "BuiltEnvironment",
    "ImageClassifier",
    "ImageDirectory",
    "RankPlacement",
    "Snapshot",
    "TrainConfig",
    "build",
    "build_environment",
    "cached_build",
    "check_same_classes",
    "fit_estimator",
    "load_dataset",
    "load_model_dir",
    "make_estimator",
    "place_ranks",
    "register",
    "register_model",
    "run_command",
    "run_distributed",
    "save_model_dir",
    "scan_image_directory",
    "score_folder",
    "score_images",
    "snapshot_source",
    "train_process",
    "train_pytorch",
    "train_pytorch_rank",
]
