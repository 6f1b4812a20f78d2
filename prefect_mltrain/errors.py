"""The errors users see. Each message says the rule, the value that broke it, and the fix."""

from __future__ import annotations


class MltrainError(Exception):
    """Base class of every prefect-mltrain error."""


class ConfigurationError(MltrainError, ValueError):
    """An argument, block field or file does not satisfy a rule; nothing was started."""


class SnapshotTooLargeError(ConfigurationError):
    """The source directory is larger than the snapshot limit."""


class EnvironmentSpecError(ConfigurationError):
    """A `TrainingEnvironment` spec does not parse or cannot be provided on this machine."""


class EnvironmentBuildError(MltrainError):
    """Building an environment failed; the partial build was discarded."""


class ComputeError(MltrainError):
    """The compute target cannot be resolved or reached."""


class JobFailedError(MltrainError):
    """The job's command exited with a non-zero code."""

    def __init__(self, message: str, exit_code: int, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    def __reduce__(self) -> tuple[type[JobFailedError], tuple[str, int, str]]:
        # Rebuilt with all its arguments when it crosses a Dask worker boundary (pickle).
        return (type(self), (str(self), self.exit_code, self.stderr_tail))


class ModelRegistrationError(MltrainError):
    """A model could not be registered; nothing was overwritten."""


class ModelNotFoundError(ConfigurationError):
    """No registered model (or no such version of it) by that name."""


class MissingDependencyError(MltrainError, ImportError):
    """An optional dependency is not installed."""


def missing_extra(module: str, extra: str) -> MissingDependencyError:
    """Build the error for an optional dependency that is not installed.

    Args:
        module: The module that failed to import.
        extra: The prefect-mltrain extra that installs it.

    Returns:
        An error whose message gives the exact install command.
    """
    return MissingDependencyError(
        f"`{module}` is required for this feature but is not installed. "
        f"Install it with: pip install 'prefect-mltrain[{extra}]'"
    )


class DockerUnavailableError(ConfigurationError):
    """An environment needs a Docker engine and none answers."""


class InvalidModelDirectoryError(ConfigurationError):
    """The model to train is not a PyTorch image classifier we can build or load."""


class NotLabeledDatasetError(ConfigurationError):
    """An image directory has no class folders, so its images carry no labels."""


class InvalidDatasetError(ConfigurationError):
    """The training and validation image directories do not have the same classes."""


class DistributedTrainingError(MltrainError):
    """A rank of a distributed training run failed or could not be placed; the run stopped."""


class MetricNotReportedError(MltrainError):
    """A finished trial did not report the sweep's primary metric."""


class SweepLockedError(MltrainError):
    """Another process is running a sweep of the same name."""


class TrialsLostError(MltrainError):
    """A sweep lost trials (their worker or process died) more often than it retries them."""
