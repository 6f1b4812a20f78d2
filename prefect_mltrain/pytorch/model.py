"""The trained-model directory of `train_pytorch_model`, and the classifier loaded from it.

A model directory holds `weights.pt` (a state dict of CPU tensors, so a model trained on a GPU
loads on a machine without one) and `manifest.json` (architecture, class list, preprocessing,
versions). torch is imported only when a model is built, saved or loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import InvalidModelDirectoryError
from prefect_mltrain.pytorch.data import IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
FORMAT = "prefect-mltrain/torchvision-classifier/1"


def build_model(architecture: str, num_classes: int) -> Any:
    """An untrained torchvision classifier with a `num_classes`-way head (nothing is downloaded)."""
    import torchvision

    return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)


def cpu_state_dict(module: Any) -> dict[str, Any]:
    """The module's state dict with every tensor copied to the CPU (device-independent to load)."""
    module = getattr(module, "module", module)  # unwrap DistributedDataParallel
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def load_initial_weights(model: Any, path: str) -> list[str]:
    """Load a state dict (or a model directory's weights) into `model`, forced onto the CPU.

    Weights whose shape does not fit (a classifier head for another number of classes) are
    skipped, so an ImageNet-trained file fine-tunes to new classes.

    Returns:
        The names of the skipped weights.

    Raises:
        InvalidModelDirectoryError: The file is not a PyTorch state dict of this architecture.
    """
    import torch

    source = Path(path)
    if source.is_dir():
        source = source / WEIGHTS
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidModelDirectoryError(
            f"`initial_weights`={path!r} cannot be read as PyTorch weights ({type(exc).__name__}: "
            f"{exc}). Fix: save them with `torch.save(model.state_dict(), path)`."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidModelDirectoryError(
            f"`initial_weights`={path!r} holds a {type(state).__name__}, not a state dict. Fix: "
            f"save `model.state_dict()`, not the model object."
        )
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    skipped = sorted(k for k in state if k not in fitting)
    missing = sorted(k for k in own if k not in fitting)
    # A head or two may differ; most of the body must match, or it is another architecture.
    if len(fitting) < 0.8 * len(own):
        raise InvalidModelDirectoryError(
            f"`initial_weights`={path!r} does not fit the chosen architecture: only "
            f"{len(fitting)} of its {len(own)} weights match (e.g. missing {missing[:3]}). Fix: "
            f"pick the `model` these weights were saved from."
        )
    model.load_state_dict(fitting, strict=False)
    return skipped


def save_model_dir(
    directory: str | Path,
    module: Any,
    architecture: str,
    classes: list[str],
    image_size: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the model directory: CPU weights and the manifest, each replaced atomically."""
    import torch
    import torchvision

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{WEIGHTS}.tmp"
    torch.save(cpu_state_dict(module), tmp)
    os.replace(tmp, target / WEIGHTS)
    manifest = {
        "format": FORMAT,
        "architecture": architecture,
        "classes": list(classes),
        "preprocessing": {
            "resize": [image_size, image_size],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "color": "RGB",
        },
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        **(extra or {}),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target


@dataclass
class ImageClassifier:
    """A trained image classifier: the torch module in eval mode, its classes and preprocessing."""

    module: Any
    architecture: str
    classes: list[str]
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> Any:
        """The device the weights are on."""
        return next(self.module.parameters()).device

    def transform(self) -> Any:
        """The evaluation preprocessing it was trained with."""
        from prefect_mltrain.pytorch.data import image_transform

        return image_transform(self.image_size, train=False, mean=self.mean, std=self.std)

    def predict_proba(self, images: list[Any]) -> Any:
        """Class probabilities (a numpy array, one row per image) of PIL images."""
        import torch

        transform = self.transform()
        batch = torch.stack([transform(image.convert("RGB")) for image in images]).to(self.device)
        with torch.inference_mode():
            return torch.softmax(self.module(batch), dim=1).cpu().numpy()

    def predict(self, images: list[Any]) -> list[str]:
        """The predicted class name of each PIL image."""
        return [self.classes[i] for i in self.predict_proba(images).argmax(axis=1)]


def load_model_dir(directory: str | Path, device: str = "cpu") -> ImageClassifier:
    """Load a model directory onto `device` (the CPU by default, whatever it was trained on).

    Raises:
        InvalidModelDirectoryError: The directory is not one that `save_model_dir` wrote.
    """
    import torch

    root = Path(directory)
    if not (root / MANIFEST).is_file() or not (root / WEIGHTS).is_file():
        raise InvalidModelDirectoryError(
            f"{str(root)!r} is not a PyTorch model directory: it must hold {MANIFEST} and "
            f"{WEIGHTS}, as written by train_pytorch_model. Fix: point at the `model` artifact of "
            f"a train_pytorch_model run."
        )
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise InvalidModelDirectoryError(f"{str(root)!r} has format {manifest.get('format')!r}, expected {FORMAT!r}.")
    module = build_model(manifest["architecture"], len(manifest["classes"]))
    module.load_state_dict(torch.load(root / WEIGHTS, map_location=device, weights_only=True))
    module.to(device).eval()
    pre = manifest["preprocessing"]
    return ImageClassifier(
        module,
        manifest["architecture"],
        list(manifest["classes"]),
        int(pre["resize"][0]),
        tuple(pre["mean"]),
        tuple(pre["std"]),
        manifest,
    )


def list_images(directory: str | Path) -> tuple[list[Path], list[str | None]]:
    """Images to score and their labels: class folders give labels, loose images have none."""
    root = Path(directory)
    paths: list[Path] = []
    labels: list[str | None] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            relative = path.relative_to(root)
            paths.append(path)
            labels.append(relative.parts[0] if len(relative.parts) > 1 else None)
    return paths, labels
