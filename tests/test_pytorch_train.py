"""train_pytorch_model end to end on CPU: single process, DDP over gloo on 2 Dask workers, resume."""

from __future__ import annotations

import doctest

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from prefect_mltrain.blocks import MlflowTracking, RegisteredModel  # noqa: E402
from prefect_mltrain.errors import DistributedTrainingError  # noqa: E402
from prefect_mltrain.flows import train_pytorch_model  # noqa: E402
from tests.helpers import flow_run_logs  # noqa: E402
from tests.pytorch_helpers import FailOnce, StopAfter, make_image_dir  # noqa: E402

TINY = {"model": "resnet18", "image_size": 32, "batch_size": 4, "print_frequency": 2}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return (
        str(make_image_dir(root / "train", per_class=8, seed=1)),
        str(make_image_dir(root / "valid", per_class=4, seed=2)),
    )


def _steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowTracking().client().get_metric_history(run_id, key))


def test_single_process_logs_every_epoch_and_registers(images, compute, unique_name, tmp_path):
    import torch
    import torchvision

    # Initial weights from a local file with another head (10 classes): the body is fine-tuned.
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "init.pt")
    state = train_pytorch_model(
        *images,
        **TINY,
        epochs=2,
        learning_rate=0.01,
        initial_weights=str(tmp_path / "init.pt"),
        model_name=unique_name,
        compute=compute,
        return_state=True,
    )
    result = state.result()
    assert result.epochs_trained == [1, 2] and result.world_size == 1 and result.classes == ["blue", "red"]
    for key in ("train_loss", "val_loss", "top1_accuracy", "top5_accuracy", "train_images_per_sec"):
        assert _steps(result.mlflow_run_id, key) == [1, 2], key
    run = MlflowTracking().client().get_run(result.mlflow_run_id)
    assert run.data.params["batch_size"] == "4" and run.data.params["learning_rate"] == "0.01"
    assert run.data.metrics["top5_accuracy"] == 1.0 and run.data.metrics["train_images_per_sec"] > 0
    artifacts = {a.path for a in MlflowTracking().client().list_artifacts(result.mlflow_run_id, "model")}
    assert artifacts == {"model/manifest.json", "model/weights.pt"}
    logs = flow_run_logs(str(state.state_details.flow_run_id), expect="epoch 2/2")
    assert any("Initial weights from" in m and "fc.weight" in m for m in logs)
    assert any("epoch 1 iter 2/4" in m for m in logs)  # print_frequency=2, 16 images / batch 4
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        charts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["pytorch-training-metrics"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert charts and "top1_accuracy" in str(max(charts, key=lambda a: a.created).data)
    entry = RegisteredModel.load(unique_name)
    assert entry.framework == "torchvision" and entry.metrics["val_loss"] == result.metrics["val_loss"]
    classifier = entry.load_model()
    assert str(classifier.device) == "cpu" and classifier.classes == ["blue", "red"]
    from PIL import Image

    assert classifier.predict([Image.new("RGB", (32, 32), (20, 40, 220))])[0] in ("blue", "red")


def test_ddp_gloo_on_two_workers_keeps_per_rank_logs(images, compute):
    result = train_pytorch_model(*images, **TINY, epochs=2, processes_per_node=2, dist_timeout=60, compute=compute)
    assert result.world_size == 2 and result.epochs_trained == [1, 2]
    assert _steps(result.mlflow_run_id, "val_loss") == [1, 2]
    client = MlflowTracking().client()
    assert {a.path for a in client.list_artifacts(result.mlflow_run_id, "logs")} == {
        "logs/rank_0.log",
        "logs/rank_1.log",
    }
    from pathlib import Path

    rank1 = (Path(result.checkpoint_dir) / "logs" / "rank_1.log").read_text()
    assert "backend=gloo rank=1/2" in rank1 and "epoch 2/2" in rank1
    # Seed 004: the learning rate is multiplied by the world size.
    assert "lr 0.002" in (Path(result.checkpoint_dir) / "logs" / "rank_0.log").read_text()
    # 16 images over 2 ranks of batch 4: 2 steps per rank and epoch.
    assert "2 step(s) per epoch" in rank1


def test_retry_resumes_from_the_last_checkpoint(images, compute, tmp_path):
    result = train_pytorch_model(
        *images,
        **TINY,
        epochs=3,
        max_restarts=1,
        report=FailOnce(tmp_path / "m", 2),
        checkpoint_dir=str(tmp_path / "ckpt"),
        compute=compute,
    )
    assert result.attempts == 2 and result.resumed_from_epoch == 1 and result.epochs_trained == [2, 3]
    assert _steps(result.mlflow_run_id, "val_loss") == [1, 2, 3]  # no epoch logged twice
    assert "simulated crash at epoch 2" in (tmp_path / "ckpt" / "logs" / "rank_0.log").read_text()


def test_ddp_retry_resumes_all_ranks_from_the_checkpoint(images, compute, tmp_path):
    result = train_pytorch_model(
        *images,
        **TINY,
        epochs=2,
        processes_per_node=2,
        dist_timeout=30,
        max_restarts=1,
        report=FailOnce(tmp_path / "m", 2),
        checkpoint_dir=str(tmp_path / "ckpt"),
        compute=compute,
    )
    assert result.attempts == 2 and result.world_size == 2
    assert result.resumed_from_epoch == 1 and result.epochs_trained == [2]
    rank1 = (tmp_path / "ckpt" / "logs" / "rank_1.log").read_text()
    # Rank 1 learnt of rank 0's crash at once (not after `dist_timeout`), then resumed with it.
    assert "rank 0 failed after epoch 2" in rank1 and "Resuming from checkpoint after epoch 1" in rank1


def test_new_run_continues_a_killed_runs_checkpoint_and_report_can_stop(images, compute, tmp_path):
    first = train_pytorch_model(*images, **TINY, epochs=1, checkpoint_dir=str(tmp_path), compute=compute)
    second = train_pytorch_model(
        *images, **TINY, epochs=4, checkpoint_dir=str(tmp_path), report=StopAfter(2), compute=compute
    )
    assert first.epochs_trained == [1]
    assert second.resumed_from_epoch == 1 and second.epochs_trained == [2] and second.stopped_early
    assert [row["epoch"] for row in second.history] == [1, 2]


def test_too_few_workers_fails_before_training(images, compute):
    with pytest.raises(DistributedTrainingError, match=r"needs 1 host\(s\) with at least 3 Dask worker"):
        train_pytorch_model(*images, **TINY, epochs=1, processes_per_node=3, compute=compute)


def test_doctests_of_schedule_device_and_placement():
    from prefect_mltrain.pytorch import data as pytorch_data
    from prefect_mltrain.pytorch import train as pytorch_train

    for module in (pytorch_train, pytorch_data):
        failures, tried = doctest.testmod(module)
        assert failures == 0 and tried > 0


def test_device_selection_by_patching(monkeypatch):
    """A rank picks cuda when torch sees a GPU (patched) and the CPU otherwise; backend follows."""
    import torch

    from prefect_mltrain.pytorch.train import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert select_device(torch.cuda.is_available(), torch.cuda.device_count(), 3, None) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(torch.cuda.is_available(), 2, 0, "0") == "cpu"


def test_a_dying_worker_fails_the_run_clearly_without_hanging(images, tmp_path):
    """SIGKILL rank 1's Dask worker mid-run: rank 0's collective fails and the run stops, naming both."""
    import os
    import re
    import signal
    import threading
    import time

    from prefect_mltrain.blocks import DaskCompute

    # Its own cluster: the shared one must keep its workers for the other tests.
    doomed = DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True, "name": "doomed"},
    )
    log = tmp_path / "logs" / "rank_1.log"
    killed = []

    def kill_rank_1() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if "epoch 1/" in text:
                pid = int(re.search(r"pid=(\d+)", text).group(1))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_rank_1, daemon=True)
    killer.start()
    started = time.monotonic()
    with pytest.raises(DistributedTrainingError) as failure:
        train_pytorch_model(
            *images,
            **TINY,
            epochs=30,
            processes_per_node=2,
            dist_timeout=10,
            checkpoint_dir=str(tmp_path),
            compute=doomed,
        )
    assert killed, "rank 1 was never seen training"
    message = str(failure.value)
    assert "Distributed training with 2 ranks failed" in message and "rank 0 on" in message
    assert "rank 1 on" in message and "Per-rank logs" in message
    assert time.monotonic() - started < 120
    assert (tmp_path / "checkpoint.pt").exists()  # a retry resumes from here


def test_densenet_with_amp_channels_last_and_warmup_in_process(tmp_path):
    """The DenseNet family, and the GPU defaults (AMP, channels_last) forced on: bfloat16 on the CPU."""
    from prefect_mltrain.pytorch.model import load_model_dir
    from prefect_mltrain.pytorch.train import TrainConfig, train_process

    data = str(make_image_dir(tmp_path / "d", per_class=2, size=32))
    result = train_process(
        TrainConfig(
            model="densenet121",
            training_data=data,
            validation_data=data,
            classes=("blue", "red"),
            checkpoint_dir=str(tmp_path / "ckpt"),
            epochs=1,
            image_size=32,
            batch_size=4,
            warmup_steps=1,
            amp=True,
            channels_last=True,
        )
    )
    assert result["epochs_trained"] == [1] and result["device"] == "cpu"
    assert result["history"][0]["learning_rate"] == 0.001  # warm-up over 1 epoch of 1 step ends at the base rate
    assert load_model_dir(result["model_dir"]).architecture == "densenet121"
