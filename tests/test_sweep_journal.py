"""The journal file that holds a sweep's Optuna study, and its `flock` lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prefect_mltrain.sweep.journal import FlockLock, import_optuna, journal_storage


def test_a_held_lock_makes_the_next_writer_wait_until_it_is_released(tmp_path: Path) -> None:
    held = FlockLock(str(tmp_path / "study.journal.lock"))
    held.acquire()
    entered = threading.Event()

    def second_writer() -> None:
        other = FlockLock(str(tmp_path / "study.journal.lock"))
        other.acquire()
        entered.set()
        other.release()

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert not entered.wait(0.5), "the second writer got the lock while the first held it"
    held.release()
    assert entered.wait(10), "the second writer was not let in after the release"
    thread.join()


def test_releasing_a_lock_that_is_not_held_names_the_file(tmp_path: Path) -> None:
    lock = FlockLock(str(tmp_path / "study.journal.lock"))
    with pytest.raises(RuntimeError, match=r"study\.journal\.lock is not held"):
        lock.release()


_WRITER = """
import sys
from prefect_mltrain.sweep.journal import import_optuna, journal_storage
optuna = import_optuna()
study = optuna.load_study(study_name="s", storage=journal_storage(sys.argv[1]))
for i in range(25):
    trial = study.ask()
    trial.set_user_attr("writer", sys.argv[2])
    study.tell(trial, float(i))
"""


def test_processes_writing_one_study_at_once_lose_no_trial(tmp_path: Path) -> None:
    path = str(tmp_path / "study.journal")
    optuna = import_optuna()
    optuna.create_study(study_name="s", storage=journal_storage(path))
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, path, str(n)]) for n in range(4)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0, 0, 0]

    trials = optuna.load_study(study_name="s", storage=journal_storage(path)).get_trials()
    assert len(trials) == 100
    assert sorted(t.number for t in trials) == list(range(100))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["writer"] for t in trials} == {"0", "1", "2", "3"}
