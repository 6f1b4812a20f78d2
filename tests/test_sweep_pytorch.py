"""The PyTorch trainer as a sweep trial: per-epoch reports reach the early-termination policy."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from prefect_mltrain.blocks import MlflowTracking  # noqa: E402
from prefect_mltrain.errors import ConfigurationError  # noqa: E402
from prefect_mltrain.flows import sweep  # noqa: E402
from prefect_mltrain.sweep import Limits, Objective, PytorchTrial, choice  # noqa: E402
from tests.pytorch_helpers import make_image_dir  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-images")
    return (
        str(make_image_dir(root / "train", per_class=6, seed=1)),
        str(make_image_dir(root / "valid", per_class=3, seed=2)),
    )


def test_pytorch_trials_report_every_epoch(images, compute, unique_name):
    trial = PytorchTrial(
        training_data=images[0], validation_data=images[1], fixed={"image_size": 32, "batch_size": 4, "epochs": 2}
    )
    result = sweep(
        trial=trial,
        search_space={"learning_rate": choice([0.01, 0.05])},
        objective=Objective("val_loss", "minimize"),
        sampling_algorithm="grid",
        limits=Limits(max_total_trials=2, max_concurrent_trials=1),
        name=unique_name,
        compute=compute,
    )
    assert sorted(t["learning_rate"] for t in result.trials) == [0.01, 0.05]
    assert all(t["state"] == "COMPLETE" for t in result.trials)
    client = MlflowTracking().client()
    history = client.get_metric_history(result.best_mlflow_run_id, "val_loss")
    assert {1, 2} <= {m.step for m in history}  # one report per epoch (given to the policy), and the final value


def test_pytorch_trial_refuses_unknown_parameters(images, unique_name):
    trial = PytorchTrial(training_data=images[0], validation_data=images[1])
    state = sweep(
        trial=trial,
        search_space={"momentum": choice([0.8, 0.9])},
        objective=Objective("val_loss", "minimize"),
        limits=Limits(max_total_trials=1, max_concurrent_trials=1),
        name=unique_name,
        return_state=True,
    )
    with pytest.raises(ConfigurationError, match=r"cannot tune or fix \['momentum'\]; valid: \['batch_size'"):
        state.result()
