"""Seed 004's errors: refused in the flow, before compute starts and before an MLflow run exists."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from prefect_mltrain.errors import (  # noqa: E402
    ConfigurationError,
    InvalidDatasetError,
    InvalidModelDirectoryError,
    NotLabeledDatasetError,
)
from prefect_mltrain.flows import train_pytorch_model  # noqa: E402
from tests.helpers import mlflow_runs_of  # noqa: E402
from tests.pytorch_helpers import make_image_dir  # noqa: E402


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    make_image_dir(root / "train", per_class=2, size=8)
    make_image_dir(root / "valid3", classes=("blue", "green", "red"), per_class=1, size=8)
    make_image_dir(root / "flat", per_class=2, size=8, labelled=False)
    make_image_dir(root / "mixed", per_class=1, size=8)
    make_image_dir(root / "mixed", per_class=1, size=8, labelled=False)
    (root / "not-weights.pt").write_text("hello")
    (root / "weights.txt").write_text("hello")
    return root


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"model": "vgg-nope"},
            InvalidModelDirectoryError,
            r"`model`='vgg-nope' is not a PyTorch model.*'densenet121'",
        ),
        (
            {"initial_weights": "{root}/weights.txt"},
            InvalidModelDirectoryError,
            r"must be an existing PyTorch state-dict file",
        ),
        ({"initial_weights": "{root}"}, InvalidModelDirectoryError, r"directory without manifest.json"),
        (
            {"training_data": "{root}/flat"},
            NotLabeledDatasetError,
            r"not a labelled image directory: it has 4 images directly",
        ),
        (
            {"training_data": "{root}/mixed"},
            NotLabeledDatasetError,
            r"mixes class folders \['blue', 'red'\] with 2 images",
        ),
        (
            {"validation_data": "{root}/valid3"},
            InvalidDatasetError,
            r"classes \[\] are only in `training_data`.*classes \['green'\] are only in `validation_data`",
        ),
        ({"training_data": "{root}/nope"}, ConfigurationError, r"`training_data`=.* must be an existing directory"),
        ({"epochs": 0}, ConfigurationError, r"`epochs` must be > 0, but got epochs=0"),
        ({"image_size": 16}, ConfigurationError, r"`image_size` must be >= 32.*got image_size=16"),
        ({"model_name": "My_Model"}, ConfigurationError, r"Fix: use 'my-model'"),
    ],
)
def test_bad_input_is_refused_before_compute(dirs, kwargs, error, message):
    args = {"training_data": f"{dirs}/train", "validation_data": f"{dirs}/train"}
    args.update({k: v.format(root=dirs) if isinstance(v, str) else v for k, v in kwargs.items()})
    state = train_pytorch_model(return_state=True, **args)
    with pytest.raises(error, match=message):
        state.result()
    assert mlflow_runs_of(str(state.state_details.flow_run_id)) == []


def test_weights_of_another_architecture_fail_on_the_worker(dirs, compute, tmp_path):
    import torch
    import torchvision

    torch.save(torchvision.models.densenet121(num_classes=2).state_dict(), tmp_path / "densenet.pt")
    with pytest.raises(InvalidModelDirectoryError, match=r"does not fit the chosen architecture"):
        train_pytorch_model(
            f"{dirs}/train",
            f"{dirs}/train",
            model="resnet18",
            image_size=32,
            epochs=1,
            initial_weights=str(tmp_path / "densenet.pt"),
            compute=compute,
        )


def test_unreadable_weights_file(dirs, compute):
    with pytest.raises(InvalidModelDirectoryError, match=r"cannot be read as PyTorch weights"):
        train_pytorch_model(
            f"{dirs}/train",
            f"{dirs}/train",
            model="resnet18",
            image_size=32,
            epochs=1,
            initial_weights=f"{dirs}/not-weights.pt",
            compute=compute,
        )


def test_missing_torch_gives_the_install_command(monkeypatch):
    import sys

    from prefect_mltrain.errors import MissingDependencyError
    from prefect_mltrain.registry.frameworks import load_model

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'prefect-mltrain\[torch\]'"):
        load_model("torchvision", "runs:/x/model", "sqlite:///nowhere.db")
