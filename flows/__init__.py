"""Flows: every one is deployable and usable as a subflow."""

from prefect_mltrain.flows.sweep import SweepResult, sweep
from prefect_mltrain.flows.train_job import JobResult, train_job
from prefect_mltrain.flows.train_sklearn import FitResult, train_sklearn

__all__ = ["FitResult", "JobResult", "SweepResult", "sweep", "train_job", "train_sklearn"]
