"""Prefect task: build or reuse a training environment on the worker that runs it."""

from __future__ import annotations

from prefect import task

from prefect_mltrain.blocks.environment import TrainingEnvironment
from prefect_mltrain.environments.build import BuiltEnvironment, build


@task(name="build-environment", task_run_name="build-environment-{environment.kind}")
def build_environment(environment: TrainingEnvironment) -> BuiltEnvironment:
    """Prefect task: build or reuse `environment` on the worker that runs it."""
    return build(environment)
