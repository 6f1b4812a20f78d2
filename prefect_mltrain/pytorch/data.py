"""Labelled image directories for the PyTorch trainer: checks (no torch) and datasets (torch).

A labelled image directory holds one folder per class with that class's images, the layout of
Azure ML's "Convert to Image Directory" output and of `torchvision.datasets.ImageFolder`:

    train/
      cat/ 001.jpg 002.png ...
      dog/ ...

The checks run in the flow process before any compute starts and import nothing heavy; the
datasets are built on the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_mltrain.errors import (
    ConfigurationError,
    InvalidDatasetError,
    InvalidModelDirectoryError,
    NotLabeledDatasetError,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# ImageNet statistics: what torchvision's classifiers are normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Architectures checked to build with `torchvision.models.get_model(name, num_classes=...)`.
ARCHITECTURES = (
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


@dataclass(frozen=True)
class ImageDirectory:
    """A checked labelled image directory: its classes (sorted) and image count per class."""

    path: str
    classes: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of images."""
        return sum(self.counts)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_image_directory(path: str | Path, parameter: str = "training_data") -> ImageDirectory:
    """Check that `path` is a labelled image directory (class folders of images) and describe it.

    Args:
        path: The directory.
        parameter: The flow argument it came from, named in errors.

    Raises:
        ConfigurationError: The directory does not exist.
        NotLabeledDatasetError: It has images but no class folders, or no images at all.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigurationError(
            f"`{parameter}`={str(path)!r} must be an existing directory of class folders, but it "
            f"does not exist or is not a directory. Fix: pass the path of a labelled image directory."
        )
    loose = _images_in(root)
    classes, counts = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = _images_in(folder)
        if images:
            classes.append(folder.name)
            counts.append(len(images))
    if not classes:
        found = f"{len(loose)} images directly in it" if loose else "no images in any class folder"
        raise NotLabeledDatasetError(
            f"`{parameter}`={str(path)!r} is not a labelled image directory: it has {found}. A "
            f"labelled image directory holds one folder per class, e.g. '{root}/cat/1.jpg' and "
            f"'{root}/dog/2.jpg'. Fix: move each image into a folder named after its class."
        )
    if loose:
        raise NotLabeledDatasetError(
            f"`{parameter}`={str(path)!r} mixes class folders {classes} with {len(loose)} images "
            f"directly in it (e.g. {loose[0].name!r}), which carry no label. Fix: move them into "
            f"their class folders, or remove them."
        )
    return ImageDirectory(str(root.resolve()), tuple(classes), tuple(counts))


def check_same_classes(train: ImageDirectory, valid: ImageDirectory) -> None:
    """Check that training and validation directories have exactly the same class folders.

    Raises:
        InvalidDatasetError: They differ; the message says which classes each one lacks.
    """
    if train.classes == valid.classes:
        return
    only_train = sorted(set(train.classes) - set(valid.classes))
    only_valid = sorted(set(valid.classes) - set(train.classes))
    raise InvalidDatasetError(
        f"The training and validation datasets must have the same classes, but classes "
        f"{only_train} are only in `training_data` ({train.path}) and classes {only_valid} are "
        f"only in `validation_data` ({valid.path}). Fix: give both directories the same class "
        f"folders (an empty class cannot be validated, so add images to it or remove it)."
    )


def check_architecture(model: str) -> str:
    """Check that `model` names a supported torchvision classifier.

    >>> check_architecture("resnet18")
    'resnet18'

    Raises:
        InvalidModelDirectoryError: It does not; the message lists the supported ones.
    """
    if model not in ARCHITECTURES:
        raise InvalidModelDirectoryError(
            f"`model`={model!r} is not a PyTorch model this trainer can build. Supported "
            f"torchvision classifiers: {list(ARCHITECTURES)}. Fix: pick one of them (add "
            f"`initial_weights` to start from a saved state dict or trained model directory)."
        )
    return model


def check_initial_weights(path: str | None) -> str | None:
    """Check, without torch, that `initial_weights` is a `.pt`/`.pth` file or a model directory.

    Raises:
        InvalidModelDirectoryError: It is missing or of another kind; loading it is checked on
            the worker.
    """
    if path is None:
        return None
    target = Path(path).expanduser()
    if target.is_dir():
        if not (target / "manifest.json").exists():
            raise InvalidModelDirectoryError(
                f"`initial_weights`={path!r} is a directory without manifest.json, so it is not a "
                f"PyTorch model directory written by train_pytorch_model. Fix: point it at such a "
                f"directory or at a state-dict file (.pt/.pth)."
            )
        return str(target.resolve())
    if not target.is_file() or target.suffix.lower() not in (".pt", ".pth"):
        raise InvalidModelDirectoryError(
            f"`initial_weights`={path!r} must be an existing PyTorch state-dict file (.pt/.pth) or "
            f"a model directory, but it is missing or has another suffix. Fix: save the weights "
            f"with `torch.save(model.state_dict(), 'weights.pt')` and pass that path."
        )
    return str(target.resolve())


def image_transform(
    image_size: int, train: bool, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> Any:
    """The preprocessing of the trainer: resize to a square, flip when training, normalise."""
    from torchvision import transforms

    steps: list[Any] = [transforms.Resize((image_size, image_size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def image_folder(path: str, classes: tuple[str, ...], image_size: int, train: bool) -> Any:
    """A torchvision `ImageFolder` whose labels are indexes into `classes` (the training classes)."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(path, transform=image_transform(image_size, train))
    if tuple(dataset.classes) != tuple(classes):
        # Checked in the flow already; the directory changed since.
        raise InvalidDatasetError(f"Image directory {path!r} now has classes {dataset.classes}, not {list(classes)}.")
    return dataset
