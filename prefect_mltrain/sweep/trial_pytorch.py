"""`PytorchTrial`: the PyTorch image classifier (`train_pytorch_model`'s training) as a sweep's trial."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prefect_mltrain.errors import ConfigurationError
from prefect_mltrain.sweep.space import SearchSpace
from prefect_mltrain.sweep.trial_base import TrialContext, TrialSpec

# TrainConfig fields a search space may tune for a PyTorch trial.
PYTORCH_TUNABLE = (
    "batch_size",
    "epochs",
    "image_size",
    "learning_rate",
    "model",
    "patience",
    "random_seed",
    "warmup_steps",
)


@dataclass
class PytorchTrial(TrialSpec):
    """The PyTorch image classifier (`train_pytorch_model`'s training), one process per trial.

    The search space names training parameters (`learning_rate`, `batch_size`, `model`, ...);
    `fixed` sets the others. Every epoch's validation metrics (`val_loss`, `top1_accuracy`,
    ...) are reported, so early termination stops laggards between epochs. The trial trains
    in its Dask worker itself: `train_pytorch_model` would start a Dask runner of its own there.
    """

    training_data: str
    validation_data: str
    model: str = "resnet18"
    fixed: dict[str, Any] = field(default_factory=dict)
    type: ClassVar[str] = "pytorch"
    framework: str = "torchvision"

    def check(self, space: SearchSpace) -> None:
        from prefect_mltrain.pytorch.data import check_architecture, check_same_classes, scan_image_directory

        unknown = sorted((set(space) | set(self.fixed)) - set(PYTORCH_TUNABLE))
        if unknown:
            raise ConfigurationError(f"A PyTorch trial cannot tune or fix {unknown}; valid: {list(PYTORCH_TUNABLE)}.")
        check_architecture(self.fixed.get("model", self.model))
        check_same_classes(
            scan_image_directory(self.training_data, "training_data"),
            scan_image_directory(self.validation_data, "validation_data"),
        )

    def run(self, params: dict[str, Any], context: TrialContext) -> Mapping[str, float]:
        from prefect_mltrain.pytorch.data import scan_image_directory
        from prefect_mltrain.pytorch.train import TrainConfig, train_process

        train_dir = scan_image_directory(self.training_data, "training_data")
        valid_dir = scan_image_directory(self.validation_data, "validation_data")
        settings = {"model": self.model, **self.fixed, **params}
        with tempfile.TemporaryDirectory(prefix=f"trial-{context.number}-") as checkpoints:
            config = TrainConfig(
                training_data=train_dir.path,
                validation_data=valid_dir.path,
                classes=train_dir.classes,
                checkpoint_dir=checkpoints,
                tracking_uri=context.mlflow_env.get("MLFLOW_TRACKING_URI"),
                **settings,
            )

            def report(epoch: int, metrics: dict[str, float]) -> bool:
                context.report(metrics, step=epoch)  # raises TrialStopped when the policy says so
                return False

            result = train_process(config, report=report)
        return dict(result["history"][-1])

    def describe(self) -> str:
        return f"pytorch {self.fixed.get('model', self.model)} on {self.training_data}"
