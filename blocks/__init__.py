"""Blocks: configuration and state that users save in Prefect."""

from prefect_mltrain.blocks.compute import DaskCompute
from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.blocks.model import RegisteredModel
from prefect_mltrain.blocks.tracking import MlflowTracking

__all__ = ["DaskCompute", "MlflowTracking", "RegisteredModel", "TrainingEnvironment"]
