"""Faults of a sweep, with real processes and real signals: no trial lost, nothing left running.

A Dask worker SIGKILLed under a running trial (as Dask's worker-loss tests and Ray Tune's
release tests do it) must not lose the trial: it ends FAIL in Optuna, KILLED in MLflow and
Crashed in Prefect, and runs again as a new trial (`retry_of`); its slot's concurrency lease is
freed at once, so the sweep does not stall; and the sweep ends with every trial finished once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform

TRIAL_SECONDS = 1.0


def marked_trial(params: dict[str, Any], context: Any) -> dict[str, float]:
    """A 1 s trial that leaves `<number>.start` (its pid) and `<number>.done` in `$FAULTS_DIR`."""
    folder = Path(os.environ["FAULTS_DIR"])
    (folder / f"{context.number}.start").write_text(f"{os.getpid()} {time.time()}")
    steps = 8
    for step in range(1, steps + 1):
        time.sleep(TRIAL_SECONDS / steps)
        context.report({"score": float(params["x"]) * step / steps}, step=step)
    (folder / f"{context.number}.done").write_text(str(time.time()))
    return {"score": float(params["x"])}


@pytest.fixture(scope="module")
def faults_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    os.environ["FAULTS_DIR"] = str(folder)  # the cluster's workers inherit it
    return folder


@pytest.fixture(scope="module")
def cluster(faults_dir):
    """A 2-worker LocalCluster of processes (each under a nanny that restarts it when it dies)."""
    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster


def _both_workers_up(cluster: Any) -> None:
    """Wait until both workers are up: one an earlier test killed is restarted by its nanny (a cold start,
    tens of seconds on a loaded machine), and a sweep started without it runs its trials one at a time."""
    import distributed

    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=180)
    deadline = time.monotonic() + 30  # the nannies' view (the killers' pids) follows the scheduler's
    while len({n.process.pid for n in cluster.workers.values() if n.process and n.process.pid}) < 2:
        assert time.monotonic() < deadline, "a worker's nanny has no process"
        time.sleep(0.1)


class Killer(threading.Thread):
    """SIGKILLs the worker process of a trial just started, once `after_done[i]` trials finished.

    Each kill waits until every worker up has run a trial: the one restarted after the last
    kill is past its cold start (imports: seconds, tens of them on a loaded machine).
    """

    def __init__(self, folder: Path, cluster: Any, after_done: list[int]) -> None:
        super().__init__(daemon=True)
        self.folder, self.cluster, self.after_done = folder, cluster, list(after_done)
        self.killed: list[tuple[int, float]] = []  # (trial number, time)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # shown by the test
            self.error = exc

    def _worker_pids(self) -> set[int]:
        """The pids of the cluster's worker processes that are up (each nanny's child)."""
        return {n.process.pid for n in list(self.cluster.workers.values()) if n.process and n.process.pid}

    def _run(self) -> None:
        for done_before in self.after_done:
            while not self.stop.is_set():
                done = len(list(self.folder.glob("*.done")))
                victim = self._running_trial() if done >= done_before and self._recovered() else None
                if victim and len(self._worker_pids()) == 2 and victim[1] in self._worker_pids():
                    number, pid = victim
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append((number, time.time()))
                    break
                time.sleep(0.1)

    def _recovered(self) -> bool:
        """Whether every worker up now has run a trial (a restarted one is past its cold start)."""
        started = {int(f.read_text().split()[0]) for f in self.folder.glob("*.start")}
        return self._worker_pids() <= started

    def _running_trial(self) -> tuple[int, int] | None:
        """A trial that started under 0.5 s ago and has not finished: (number, worker pid)."""
        killed = {n for n, _ in self.killed}
        for start in self.folder.glob("*.start"):
            number = int(start.stem)
            pid, started = start.read_text().split()
            if number not in killed and not (self.folder / f"{number}.done").exists():
                if time.time() - float(started) < 0.5:
                    return number, int(pid)
        return None


def _longest_gap(folder: Path, killed: list[tuple[int, float]], begin: float, end: float) -> float:
    """The longest time in [begin, end] with no trial running (a killed trial ran until its kill)."""
    ends = dict(killed)
    spans = []
    for start in folder.glob("*.start"):
        number = int(start.stem)
        started = float(start.read_text().split()[1])
        done = folder / f"{number}.done"
        spans.append((started, float(done.read_text()) if done.exists() else ends.get(number, started)))
    spans.sort()
    gap, reached = 0.0, spans[0][0] if spans else begin
    for s, e in spans:
        gap = max(gap, s - reached)
        reached = max(reached, e)
    return max(gap, end - reached if spans else end - begin)


def test_worker_killed_twice_loses_no_trial(cluster, faults_dir, unique_name, prefect_client):
    import optuna
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from prefect_mltrain.blocks import DaskCompute, MlflowTracking
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.flows.sweep import study_path, study_storage
    from prefect_mltrain.settings import MltrainSettings

    total = 12
    _both_workers_up(cluster)
    killer = Killer(faults_dir, cluster, after_done=[2, 6])
    began = time.time()
    killer.start()
    try:
        result = sweep(
            trial=FunctionTrial(marked_trial),
            search_space={"x": uniform(0, 1)},
            objective=Objective("score"),
            limits=Limits(max_total_trials=total, max_concurrent_trials=2),
            seed=7,
            name=unique_name,
            compute=DaskCompute(address=cluster.scheduler_address),
        )
    finally:
        killer.stop.set()
        killer.join(timeout=30)
    ended = time.time()
    assert killer.error is None, killer.error
    assert len(killer.killed) == 2, f"the killer killed {killer.killed}"

    study = optuna.load_study(
        study_name=unique_name, storage=study_storage(study_path(MltrainSettings().home_dir, unique_name))
    )
    trials = study.get_trials()
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    lost = {n for n, _ in killer.killed}
    by_number = {t.number: t for t in trials}
    running_optuna = [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]

    client = MlflowTracking().client()
    mlflow_running = client.search_runs(
        [result.experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{unique_name}' and attributes.status = 'RUNNING'",
    )
    flow_runs = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{unique_name}"])), limit=200
    )
    prefect_running = [r.name for r in flow_runs if not r.state.is_final()]
    stall = _longest_gap(faults_dir, killer.killed, began, ended)
    print(
        f"\nchaos: trials completed {len(completed)}/{total}, lost and retried {sorted(lost)}, "
        f"left RUNNING: optuna {len(running_optuna)}, mlflow {len(mlflow_running)}, prefect {len(prefect_running)}; "
        f"longest stall {stall:.1f} s; sweep {ended - began:.1f} s"
    )

    # Every trial finished exactly once: 12 completed, the 2 lost ones FAIL and run again once each.
    assert len(completed) == total and len(result.trials) == total
    assert {r["state"] for r in result.trials} == {"COMPLETE"}
    assert result.stop_reason == "max_total_trials reached"
    for number in lost:
        assert by_number[number].state.name == "FAIL" and by_number[number].user_attrs["abandoned"]
        assert "worker died" in by_number[number].user_attrs["lost"]
        (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == number]
        assert retry.state.name == "COMPLETE" and retry.params == by_number[number].params
    # Nothing left running anywhere; the lost trials' runs ended as what happened to them.
    assert running_optuna == [] and mlflow_running == [] and prefect_running == []
    runs = {r.name: r for r in flow_runs}
    for number in lost:
        assert runs[f"{unique_name}-trial-{number}"].state.name == "Crashed"
        mlflow_run = client.get_run(by_number[number].user_attrs["mlflow_run_id"])
        assert mlflow_run.info.status == "KILLED"
    # No stall: a dead slot's concurrency lease is freed at once.
    assert stall < 30, f"no trial ran for {stall:.1f} s"


def test_past_the_retry_limit_the_sweep_fails_naming_the_lost_trial(cluster, faults_dir, unique_name):
    """With no retries of lost trials, a worker death ends the sweep Failed, never Completed with a trial missing."""
    from prefect_mltrain.blocks import DaskCompute, MlflowTracking
    from prefect_mltrain.errors import TrialsLostError
    from prefect_mltrain.flows import sweep

    for old in faults_dir.iterdir():
        old.unlink()
    _both_workers_up(cluster)
    killer = Killer(faults_dir, cluster, after_done=[1])
    killer.start()
    try:
        with pytest.raises(TrialsLostError) as info:
            sweep(
                trial=FunctionTrial(marked_trial),
                search_space={"x": uniform(0, 1)},
                objective=Objective("score"),
                limits=Limits(max_total_trials=4, max_concurrent_trials=2, max_lost_trial_retries=0),
                name=unique_name,
                compute=DaskCompute(address=cluster.scheduler_address),
            )
    finally:
        killer.stop.set()
        killer.join(timeout=30)
    ((number, _),) = killer.killed
    assert f"trials [{number}] were lost" in str(info.value) and "Rerun it" in str(info.value)
    assert "max_lost_trial_retries`=0" in str(info.value)
    client = MlflowTracking().client()
    (parent,) = _parent_runs(client, unique_name)
    assert parent.info.status == "FAILED" and f"trials [{number}]" in parent.data.tags["mltrain.stop_reason"]


def _parent_runs(client, name):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(
        experiments, filter_string=f"tags.`mltrain.sweep` = '{name}' and tags.`mltrain.sweep_role` = 'parent'"
    )


SWEEP_SCRIPT = """
import sys
from prefect_mltrain.blocks import DaskCompute
from prefect_mltrain.flows import sweep
from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform
from test_sweep_faults import marked_trial

sweep(
    trial=FunctionTrial(marked_trial),
    search_space={"x": uniform(0, 1)},
    objective=Objective("score"),
    limits=Limits(max_total_trials=6, max_concurrent_trials=2),
    seed=3,
    name=sys.argv[1],
    compute=DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
    ),
)
"""


def test_sweep_process_killed_then_resumed(cluster, faults_dir, unique_name, prefect_client, tmp_path):
    """SIGKILL the process running a sweep (its cluster dies with it), then resume: nothing lost, nothing rerun."""
    import subprocess
    import sys

    import optuna
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from prefect_mltrain.blocks import DaskCompute, MlflowTracking
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.flows.sweep import study_path, study_storage
    from prefect_mltrain.settings import MltrainSettings

    for old in faults_dir.iterdir():
        old.unlink()
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT, unique_name],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while len(list(faults_dir.glob("*.done"))) < 2 or not _just_started(faults_dir):
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep did not get to 2 trials"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    done_before = {int(f.stem) for f in faults_dir.glob("*.done")}

    resumed_at = time.time()
    result = sweep(
        trial=FunctionTrial(marked_trial),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        limits=Limits(max_total_trials=6, max_concurrent_trials=2),
        seed=3,
        name=unique_name,
        compute=DaskCompute(address=cluster.scheduler_address),
    )
    starts = [float(f.read_text().split()[1]) for f in faults_dir.glob("*.start")]
    first = min(s for s in starts if s >= resumed_at)
    study = optuna.load_study(
        study_name=unique_name, storage=study_storage(study_path(MltrainSettings().home_dir, unique_name))
    )
    trials = study.get_trials()
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    flow_runs = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{unique_name}"])), limit=200
    )
    sweeps = [r for r in prefect_client.read_flow_runs(limit=200) if (r.parameters or {}).get("name") == unique_name]
    client = MlflowTracking().client()
    mlflow_running = client.search_runs(
        [result.experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{unique_name}' and attributes.status = 'RUNNING'",
    )
    print(
        f"\nresume: trials completed {len(completed)}/6 ({len(done_before)} before the kill), "
        f"left RUNNING: prefect {sum(not r.state.is_final() for r in [*flow_runs, *sweeps])}, "
        f"mlflow {len(mlflow_running)}; first trial {first - resumed_at:.1f} s after the resume began"
    )
    assert len(completed) == 6 and len(result.trials) == 6
    for number in done_before:  # no finished trial was run again
        assert [t.state.name for t in trials if t.user_attrs.get("retry_of") == number] == []
    assert all(r.state.is_final() for r in flow_runs) and mlflow_running == []
    assert any(r.state.name == "Crashed" for r in flow_runs)  # the trial the kill cut short
    rerun = [t for t in trials if t.user_attrs.get("retry_of") is not None]
    assert rerun and all(t.state.name == "COMPLETE" for t in rerun)
    assert sorted(r.state.name for r in sweeps) == ["Completed", "Crashed"]
    assert first - resumed_at < 30, f"the resumed sweep's first trial started {first - resumed_at:.1f} s in"


def _just_started(folder: Path) -> bool:
    """Whether a trial started under 0.3 s ago and is running: the kill lands well before it ends."""
    for start in folder.glob("*.start"):
        fields = start.read_text().split()  # empty while it is being written
        if len(fields) == 2 and not (folder / f"{start.stem}.done").exists() and time.time() - float(fields[1]) < 0.3:
            return True
    return False


@pytest.mark.unit
def test_a_trial_lost_too_often_is_not_run_again_and_counts_as_lost():
    """`lose_trial`: FAIL and queued again `max_lost_trial_retries` times, then a counted FAIL named by `lost_trials`."""
    import optuna

    from prefect_mltrain.sweep import lost as sweep_lost

    retries = Limits().max_lost_trial_retries
    assert retries == 2
    study = optuna.create_study()
    distribution = {"x": optuna.distributions.FloatDistribution(0, 1)}
    number = study.ask(distribution).number
    for attempt in range(retries + 1):
        lost = sweep_lost.lose_trial(study, number, f"worker died ({attempt})", retries)
        assert lost is not None and lost["retried"] == (attempt < retries)
        if lost["retried"]:
            retry = study.ask(distribution)
            assert retry.user_attrs["retry_of"] == number and retry.params == lost["params"]
            number = retry.number
    assert sweep_lost.lost_trials(study) == [number]
    assert len(sweep_lost.finished_trials(study)) == 1  # the abandoned attempts are not counted
    assert sweep_lost.lose_trial(study, number, "again", retries) is None  # an ended trial is left alone
    # Rerunning the sweep (resume) runs it again: it no longer counts, and nothing is lost.
    assert sweep_lost.recover(study) == 1
    assert sweep_lost.lost_trials(study) == [] and sweep_lost.finished_trials(study) == []
    assert study.ask(distribution).user_attrs["retry_of"] == number


COMMAND_SCRIPT = """
import os, sys, time
import mlflow
folder = os.environ["FAULTS_DIR"]
run_id = os.environ["MLFLOW_RUN_ID"]
open(os.path.join(folder, run_id + ".cmdstart"), "w").write(str(os.getpid()))
for step in range(1, 9):
    time.sleep(0.15)
    mlflow.log_metric("score", float(sys.argv[2]) * step / 8, step=step)
open(os.path.join(folder, run_id + ".cmddone"), "w").write("done")
"""


def _ancestor_in(pid: int, pids: set[int]) -> int | None:
    """The first ancestor of `pid` (itself included) in `pids`."""
    while pid > 1:
        if pid in pids:
            return pid
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None
    return None


def test_command_trial_survives_its_worker_killed(cluster, faults_dir, unique_name, prefect_client, tmp_path):
    """A CommandTrial's worker SIGKILLed: the script dies too, the trial runs again, nothing left RUNNING."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from prefect_mltrain.blocks import DaskCompute, MlflowTracking
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.sweep import CommandTrial

    for old in faults_dir.iterdir():
        old.unlink()
    (tmp_path / "train.py").write_text(COMMAND_SCRIPT)
    _both_workers_up(cluster)  # the test before killed one: with one, the sweep may end before it is back
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if list(faults_dir.glob("*.cmddone")):
                workers = {n.process.pid for n in list(cluster.workers.values()) if n.process and n.process.pid}
                for start in faults_dir.glob("*.cmdstart"):
                    if not (faults_dir / f"{start.stem}.cmddone").exists():
                        script = int(start.read_text())
                        worker = _ancestor_in(script, workers)
                        if worker is not None and len(workers) == 2:
                            os.kill(worker, signal.SIGKILL)
                            killed.append(script)
                            return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    result = sweep(
        trial=CommandTrial(
            script="train.py",
            source_directory=str(tmp_path),
            arguments=["--x", "${{search_space.x}}"],
            environment_variables={"FAULTS_DIR": str(faults_dir)},
            poll_seconds=0.2,
        ),
        search_space={"x": uniform(0, 1)},
        objective=Objective("score"),
        limits=Limits(max_total_trials=4, max_concurrent_trials=2),
        name=unique_name,
        compute=DaskCompute(address=cluster.scheduler_address),
    )
    killer.join(timeout=30)
    assert len(killed) == 1, "no command trial was killed"
    time.sleep(3)  # the script's supervisor kills it within a second or two of its worker
    script_alive = Path(f"/proc/{killed[0]}").exists() and "Z" not in Path(f"/proc/{killed[0]}/stat").read_text()
    client = MlflowTracking().client()
    mlflow_running = client.search_runs(
        [result.experiment_id],
        filter_string=f"tags.`mltrain.sweep` = '{unique_name}' and attributes.status = 'RUNNING'",
    )
    flow_runs = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"sweep:{unique_name}"])), limit=200
    )
    completed = [r for r in result.trials if r["state"] == "COMPLETE"]
    print(
        f"\ncommand: trials completed {len(completed)}/4, left RUNNING: mlflow {len(mlflow_running)}, "
        f"prefect {sum(not r.state.is_final() for r in flow_runs)}; killed script alive: {script_alive}"
    )
    assert len(completed) == 4 and len(result.trials) == 4
    assert mlflow_running == [] and all(r.state.is_final() for r in flow_runs)
    assert sum(r.state.name == "Crashed" for r in flow_runs) == 1
    assert not script_alive
