"""score_image_model and the model directory: CSV of predictions, accuracy, loading on the CPU."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from prefect_mltrain.blocks import MlflowTracking, RegisteredModel  # noqa: E402
from prefect_mltrain.errors import InvalidModelDirectoryError  # noqa: E402
from prefect_mltrain.flows import score_image_model  # noqa: E402
from prefect_mltrain.pytorch.model import load_model_dir, save_model_dir  # noqa: E402
from prefect_mltrain.tasks.register import register  # noqa: E402
from tests.pytorch_helpers import make_image_dir  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from prefect_mltrain.pytorch.model import build_model

    return save_model_dir(
        tmp_path_factory.mktemp("model") / "model", build_model("resnet18", 2), "resnet18", ["blue", "red"], 16
    )


def test_scores_a_registered_model_with_labels(model_dir, tmp_path, unique_name, compute):
    tracker = MlflowTracking()
    client = tracker.client()
    with tracker.start_run(tracker.ensure_experiment()) as run:
        client.log_artifacts(run.info.run_id, str(model_dir), "model")
        register(tracker, unique_name, run.info.run_id, "model", "torchvision")
    images = make_image_dir(tmp_path / "labelled", per_class=3, size=16)
    result = score_image_model(unique_name, str(images), output_csv=str(tmp_path / "p.csv"), compute=compute)
    rows = list(csv.DictReader(open(result.csv_path)))
    assert result.images == result.labelled == 6 and len(rows) == 6
    assert set(rows[0]) == {"path", "label", "predicted_label", "probability", "probability_blue", "probability_red"}
    assert result.accuracy == sum(r["label"] == r["predicted_label"] for r in rows) / 6
    assert all(abs(float(r["probability_blue"]) + float(r["probability_red"]) - 1) < 1e-4 for r in rows)
    assert RegisteredModel.load(unique_name).load_model().classes == ["blue", "red"]


def test_scores_unlabelled_images_from_a_model_directory(model_dir, tmp_path, compute):
    images = make_image_dir(tmp_path / "flat", per_class=2, size=16, labelled=False)
    result = score_image_model(str(model_dir), str(images), output_csv=str(tmp_path / "p.csv"), compute=compute)
    assert result.images == 4 and result.labelled == 0 and result.accuracy is None


def test_model_directory_is_device_independent(model_dir, monkeypatch):
    """Weights are saved as CPU tensors and loading forces the CPU, so GPU-trained models load anywhere.

    No GPU here, so this checks both halves instead of loading a CUDA-saved file (see the
    requires_cuda test below for the real round trip).
    """
    import torch

    state = torch.load(model_dir / "weights.pt", weights_only=True)
    assert {str(t.device) for t in state.values()} == {"cpu"}
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("map_location")) or real_load(*a, **k))
    assert str(load_model_dir(model_dir).device) == "cpu" and seen == ["cpu"]


@pytest.mark.requires_cuda
def test_model_trained_on_gpu_loads_on_cpu(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU: no CUDA device visible")
    from prefect_mltrain.pytorch.model import build_model

    directory = save_model_dir(tmp_path, build_model("resnet18", 2).cuda(), "resnet18", ["a", "b"], 16)
    assert str(load_model_dir(directory).device) == "cpu"


def test_not_a_model_directory(tmp_path):
    with pytest.raises(InvalidModelDirectoryError, match=r"must hold manifest.json and weights.pt"):
        load_model_dir(tmp_path)
