"""Tasks: reusable units of work."""

from prefect_mltrain.tasks.command import run_command
from prefect_mltrain.tasks.environment import BuiltEnvironment, build, build_environment
from prefect_mltrain.tasks.register import register, register_model
from prefect_mltrain.tasks.sklearn import fit_estimator, load_dataset, make_estimator
from prefect_mltrain.tasks.snapshot import Snapshot, snapshot_source

__all__ = [
    "BuiltEnvironment",
    "Snapshot",
    "build",
    "build_environment",
    "fit_estimator",
    "load_dataset",
    "make_estimator",
    "register",
    "register_model",
    "run_command",
    "snapshot_source",
]
