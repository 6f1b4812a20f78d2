"""The job's MLflow run made on a thread: which jobs may start before it, and how it always ends."""

import json
from concurrent.futures import CancelledError
from unittest.mock import Mock

import pytest

from prefect_mltrain.blocks import MlflowTracking
from prefect_mltrain.jobs import pending_run
from prefect_mltrain.jobs.pending_run import PendingRun, starts_before_run


@pytest.mark.parametrize(
    "script, command, early",
    [
        ("train.py", None, True),
        (None, "python train.py --lr 0.1", True),
        (None, "python3 -m pkg.train", True),
        (None, "/opt/env/bin/python3.11 train.py", True),
        (None, "mkdir -p outputs/model && python train.py --out outputs/model", True),
        (None, "cd sub; python train.py", True),
        (None, "python train.py --run $MLFLOW_RUN_ID", False),
        (None, "python train.py --run ${RUN}", False),
        (None, "python -c 'import os; print(os.environ[\"MLFLOW_RUN_ID\"])'", False),
        (None, "mlflow runs describe --run-id x", False),
        (None, "bash train.sh", False),
        (None, "torchrun --nproc-per-node 2 train.py", False),
        (None, "python train.py | tee out.txt", False),
        (None, "python train.py > out.txt", False),
        (None, "mkdir -p outputs", False),
        (None, "python 'unbalanced", False),
    ],
)
def test_only_python_programs_start_before_the_run(script, command, early):
    assert starts_before_run(script, command) is early


def _tracker(run_id="run-1"):
    tracker = Mock(MlflowTracking)
    tracker.ensure_experiment.return_value = "7"
    tracker.client.return_value.create_run.return_value.info.run_id = run_id
    return tracker


def test_run_is_made_with_its_tags_written_for_the_job_and_finished(tmp_path):
    tracker = _tracker()
    with PendingRun(tracker, "exp", "name", tmp_path / "mlflow" / "run.json") as pending:
        pending.start()
        pending.create({"team": "a"})
        assert pending.run_id.result(timeout=10) == "run-1"
        assert json.loads(pending.run_file.read_text()) == {"run_id": "run-1", "experiment_id": "7"}
    client = tracker.client.return_value
    client.create_run.assert_called_once_with("7", run_name="name", tags={"team": "a"})
    client.set_terminated.assert_called_once_with("run-1", status="FINISHED")


@pytest.mark.parametrize("error, status", [(ValueError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_run_ends_failed_or_killed_with_the_flow(tmp_path, error, status):
    tracker = _tracker()
    with pytest.raises(type(error)):
        with PendingRun(tracker, None, None, tmp_path / "run.json") as pending:
            pending.start()
            pending.create({})
            pending.run_id.result(timeout=10)
            raise error
    tracker.client.return_value.set_terminated.assert_called_once_with("run-1", status=status)


def test_a_run_never_asked_for_is_never_created(tmp_path):
    tracker = _tracker()
    with pytest.raises(RuntimeError):
        with PendingRun(tracker, None, None, tmp_path / "run.json") as pending:
            pending.start()
            raise RuntimeError("the environment build failed")
    with pytest.raises(CancelledError):
        pending.run_id.result(timeout=10)
    tracker.client.return_value.create_run.assert_not_called()


def test_failure_after_the_run_was_made_ends_it_failed_and_stops_the_job(tmp_path, monkeypatch):
    tracker = _tracker()
    write = pending_run.write_atomically

    def disk_full_for_the_run_id(path, content):
        if "run_id" in content:
            raise OSError(28, "No space left on device")
        write(path, content)

    monkeypatch.setattr(pending_run, "write_atomically", disk_full_for_the_run_id)
    stops: list[str] = []
    with PendingRun(tracker, None, None, tmp_path / "run.json", stops.append) as pending:
        pending.start()
        pending.create({})
        with pytest.raises(OSError):
            pending.run_id.result(timeout=10)
    tracker.client.return_value.set_terminated.assert_called_once_with("run-1", status="FAILED")
    assert stops == ["its MLflow run could not be created (OSError: [Errno 28] No space left on device)"]
    assert "No space left" in json.loads((tmp_path / "run.json").read_text())["error"]


def test_store_failure_is_written_for_the_job_and_stops_it(tmp_path):
    tracker = _tracker()
    tracker.ensure_experiment.side_effect = ConnectionError("tracking server down")
    stops: list[str] = []
    with PendingRun(tracker, None, None, tmp_path / "run.json", stops.append) as pending:
        pending.start()
        with pytest.raises(ConnectionError):
            pending.experiment_id.result(timeout=10)
        with pytest.raises(ConnectionError):
            pending.run_id.result(timeout=10)
    assert json.loads((tmp_path / "run.json").read_text()) == {"error": "ConnectionError: tracking server down"}
    assert len(stops) == 1 and "tracking server down" in stops[0]
    tracker.client.return_value.create_run.assert_not_called()


def test_the_run_file_of_an_earlier_attempt_is_removed(tmp_path):
    (tmp_path / "run.json").write_text('{"run_id": "old", "experiment_id": "1"}')
    PendingRun(_tracker(), None, None, tmp_path / "run.json")
    assert not (tmp_path / "run.json").exists()


def test_start_waits_for_its_condition(tmp_path):
    tracker = _tracker()
    flag = tmp_path / "started"
    with PendingRun(tracker, None, None, tmp_path / "run.json") as pending:
        pending.start(after=flag.exists)
        pending.create({})
        with pytest.raises(TimeoutError):
            pending.run_id.result(timeout=0.3)
        tracker.ensure_experiment.assert_not_called()
        flag.write_text("")
        assert pending.run_id.result(timeout=10) == "run-1"
