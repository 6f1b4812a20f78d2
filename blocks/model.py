"""`RegisteredModel`: one saved document per model version, plus a moving alias."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field

from prefect_mltrain.errors import ConfigurationError, ModelNotFoundError
from prefect_mltrain.tracking.models import check_model_name

__all__ = ["RegisteredModel", "check_model_name"]


class RegisteredModel(Block):
    """A registered model version: where it lives in MLflow, how it scores, where it came from.

    Each version is its own document `<name>-v<N>` that is never overwritten; the document
    `<name>` is a moving alias for the newest version. `load_model()` returns the model itself.

    Example:
        ```python
        from prefect_mltrain.blocks import RegisteredModel

        entry = RegisteredModel.load("BLOCK_NAME")  # e.g. "iris-classifier" (newest) or "iris-classifier-v2"
        model = entry.load_model()
        print(entry.version, entry.metrics, model.predict([[5.1, 3.5, 1.4, 0.2]]))
        ```
    """

    _block_type_name = "Registered Model"
    _logo_url = None  # type: ignore[assignment]
    _description = "A versioned model registered by prefect-mltrain, with its metrics and lineage."

    model_name: str = Field(title="Model name", description="Name in the MLflow model registry.")
    version: int = Field(ge=1, title="Version", description="Version number assigned by MLflow.")
    framework: str = Field(title="Framework", description="How the model is loaded, e.g. `sklearn` or `pytorch`.")
    framework_version: str | None = Field(
        default=None, title="Framework version", description="Version of the training framework."
    )
    model_uri: str = Field(title="Model URI", description="MLflow URI, `models:/<name>/<version>`.")
    source_uri: str = Field(title="Source URI", description="Where the artifact was logged, `runs:/<run id>/<path>`.")
    tracking_uri: str = Field(title="Tracking URI", description="MLflow tracking URI that holds the run and registry.")
    metrics: dict[str, float] = Field(
        default_factory=dict, title="Metrics", description="Final metrics of the training run."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, title="Parameters", description="Parameters of the training run."
    )
    description: str | None = Field(default=None, title="Description", description="Free text about this version.")
    flow_run_id: str | None = Field(
        default=None, title="Prefect flow run", description="Flow run that trained the model."
    )
    mlflow_run_id: str | None = Field(default=None, title="MLflow run", description="MLflow run that logged the model.")
    environment_hash: str | None = Field(
        default=None, title="Environment hash", description="Content hash of its TrainingEnvironment."
    )
    data_fingerprint: str | None = Field(
        default=None,
        title="Data fingerprint",
        description="SHA-256 of the training data or source snapshot it was trained on.",
    )
    resources: dict[str, Any] = Field(
        default_factory=dict,
        title="Resources",
        description='What scoring needs, e.g. `{"gpus": 0}`.',
    )
    registered_at: datetime = Field(
        default_factory=lambda: datetime.now(timezone.utc),
        title="Registered at",
        description="When this version was registered (UTC).",
    )

    @property
    def document_name(self) -> str:
        """The name of this version's document, `<name>-v<N>`."""
        return f"{self.model_name}-v{self.version}"

    def load_model(self) -> Any:
        """Load the model object (e.g. a fitted scikit-learn estimator) from MLflow.

        (`RegisteredModel.load(name)` is Prefect's: it loads this document.)
        """
        from prefect_mltrain.registry.frameworks import FILE_FRAMEWORKS, load_model

        uri = self.source_uri if self.framework in FILE_FRAMEWORKS else self.model_uri
        return load_model(self.framework, uri, self.tracking_uri)

    @classmethod
    def version_of(cls, name: str, version: int | None = None) -> RegisteredModel:
        """Load version `version` of model `name`, or its newest version when None.

        Raises:
            ModelNotFoundError: No such model or version; the message lists what exists.
        """
        check_model_name(name)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ConfigurationError(f"`version`={version!r} must be a whole number from 1. Fix: e.g. `version=1`.")
        return cls.load(name if version is None else f"{name}-v{version}")

    @classmethod
    def load(cls, name: str, validate: bool = True, client: Any = None) -> Any:  # type: ignore[override]
        """Prefect's `Block.load`, with an error that lists the versions and models there are.

        Raises:
            ModelNotFoundError: No document `name` (a `ValueError`, as Prefect's own).
        """
        try:
            return super().load(name, validate=validate, client=client)
        except ValueError as exc:
            if "Unable to find block document" not in str(exc):
                raise
            raise cls._not_found(name) from None

    @classmethod
    def _not_found(cls, name: str) -> ModelNotFoundError:
        from prefect_mltrain.blocks._load import saved_names

        names = saved_names(cls)
        match = re.fullmatch(r"(.+)-v(\d+)", name)
        model = match.group(1) if match else name
        versions = sorted(int(n.rsplit("-v", 1)[1]) for n in names if re.fullmatch(re.escape(model) + r"-v\d+", n))
        if versions:
            return ModelNotFoundError(
                f"Model {model!r} has no version {match.group(2) if match else '(alias)'} (its versions: "
                f"{', '.join(map(str, versions))}). Fix: ask for one of those, or none for the newest."
            )
        models = [n for n in names if not re.search(r"-v\d+$", n)]
        return ModelNotFoundError(
            f"No registered model {model!r} (registered: {', '.join(models[:20]) or 'none yet'}). "
            f"Fix: check the name (`prefect-mltrain model list`), or register it first."
        )
