"""prefect-mltrain: Azure-ML-style training jobs, environments and a model registry on Prefect.

The blocks are imported on first access, so `prefect_mltrain.server.stack` and the CLI can point
Prefect at a server before Prefect reads its settings; `prefect block register -m
prefect_mltrain` still finds them (it walks `dir()`). Neither mlflow nor torch is imported.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DaskCompute", "MlflowTracking", "RegisteredModel", "TrainingEnvironment"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("prefect_mltrain.blocks"), name)
    raise AttributeError(f"module 'prefect_mltrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
