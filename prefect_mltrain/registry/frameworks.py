"""Framework adapters: how a registered model of each framework is loaded.

Loaders are registered by name and import their framework only when called, so importing
prefect_mltrain never imports mlflow or torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import ConfigurationError

Loader = Callable[[str, str], Any]
# Single files and plain model folders are registered as-is; they are fetched from their run,
# not loaded as MLflow models.
FILE_FRAMEWORKS = frozenset({"joblib", "torch-file", "torchvision"})
_LOADERS: dict[str, Loader] = {}


def register_loader(framework: str) -> Callable[[Loader], Loader]:
    """Register `fn(model_uri, tracking_uri)` as the loader of `framework`'s models."""

    def decorator(fn: Loader) -> Loader:
        _LOADERS[framework] = fn
        return fn

    return decorator


def supported_frameworks() -> list[str]:
    """The frameworks whose models can be loaded, sorted."""
    return sorted(_LOADERS)


def load_model(framework: str, model_uri: str, tracking_uri: str) -> Any:
    """Load a model with the loader registered for `framework`.

    Raises:
        ConfigurationError: No loader is registered for it; the message lists the known ones.
    """
    try:
        loader = _LOADERS[framework]
    except KeyError:
        raise ConfigurationError(
            f"No loader for framework {framework!r}; supported: {supported_frameworks()}."
        ) from None
    return loader(model_uri, tracking_uri)


def detect_framework(path: Path) -> str:
    """Guess the framework of a model saved at `path` (an MLflow model folder or a file).

    Raises:
        ConfigurationError: The format is not one we can register and load again.
    """
    if path.is_dir():
        mlmodel = path / "MLmodel"
        if not mlmodel.exists():
            raise ConfigurationError(
                f"Model folder '{path}' has no MLmodel file, so it is not an MLflow model. "
                f"Fix: save it with `mlflow.<flavor>.save_model(model, '{path.name}')`, or "
                f"point `model_path` at a .joblib/.pkl/.pt file."
            )
        import yaml

        flavors = yaml.safe_load(mlmodel.read_text()).get("flavors", {})
        for flavor in ("sklearn", "pytorch"):
            if flavor in flavors:
                return flavor
        return "pyfunc"
    suffix = path.suffix.lower()
    if suffix in (".joblib", ".pkl", ".pickle"):
        return "joblib"
    if suffix in (".pt", ".pth"):
        return "torch-file"
    raise ConfigurationError(
        f"Cannot tell the framework of model file '{path.name}' (suffix {suffix!r}). "
        f"Supported: an MLflow model folder, .joblib/.pkl/.pickle, .pt/.pth."
    )


def _mlflow(tracking_uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow


@register_loader("sklearn")
def _load_sklearn(model_uri: str, tracking_uri: str) -> Any:
    return _mlflow(tracking_uri).sklearn.load_model(model_uri)


@register_loader("pyfunc")
def _load_pyfunc(model_uri: str, tracking_uri: str) -> Any:
    return _mlflow(tracking_uri).pyfunc.load_model(model_uri)


@register_loader("pytorch")
def _load_pytorch(model_uri: str, tracking_uri: str) -> Any:
    return _mlflow(tracking_uri).pytorch.load_model(model_uri, map_location="cpu")


@register_loader("joblib")
def _load_joblib(model_uri: str, tracking_uri: str) -> Any:
    import joblib

    return joblib.load(_mlflow(tracking_uri).artifacts.download_artifacts(model_uri))


@register_loader("torch-file")
def _load_torch_file(model_uri: str, tracking_uri: str) -> Any:
    try:
        import torch
    except ImportError:
        from prefect_mltrain.errors import missing_extra

        raise missing_extra("torch", "torch") from None
    local = _mlflow(tracking_uri).artifacts.download_artifacts(model_uri)
    return torch.load(local, map_location="cpu", weights_only=False)


@register_loader("torchvision")
def _load_torchvision(model_uri: str, tracking_uri: str) -> Any:
    """A `train_pytorch_model` model directory, loaded as an `ImageClassifier` on the CPU."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from prefect_mltrain.errors import missing_extra

        raise missing_extra("torch", "torch") from None
    from prefect_mltrain.pytorch.model import load_model_dir

    return load_model_dir(_mlflow(tracking_uri).artifacts.download_artifacts(model_uri), device="cpu")
