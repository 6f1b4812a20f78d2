"""The sweep's eye on its slots, in the sweep's flow run: the trials they run, their workers, progress.

Slots tell the sweep's `events` queue (a Dask queue) their worker, their concurrency lease and
the trial they run (`sweep.runner.trial_slot`); `Watch` reads it every second and ends what a
dead worker left behind. `Progress` turns trials finished into the sweep's progress artifact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect_mltrain.sweep.journal import import_optuna
from prefect_mltrain.sweep.lease import release_lease
from prefect_mltrain.sweep.lost import lose_trial
from prefect_mltrain.sweep.reconcile import crash_flow_run, kill_trial_runs
from prefect_mltrain.sweep.slot_plan import SlotPlan


@dataclass
class Progress:
    """The sweep's progress (trials finished of its capacity), passed to `update` as a percentage."""

    update: Callable[[float], Any]
    done_before: int
    capacity: int
    shown: int = -1

    def show(self, finished: int, force: bool = False) -> None:
        """Show `finished` trials of this run done; skip the write when the count did not change."""
        if force or finished != self.shown:
            self.update(100.0 * (self.done_before + finished) / max(self.capacity, 1))
            self.shown = finished


class Watch:
    """The sweep's eye on its slots (in the sweep's flow run): what each runs, and whether its worker lives.

    Slots tell the `events` queue their worker, their concurrency lease and the trial they run.
    When a slot's worker leaves the cluster (killed, out of memory), or a slot task ends while a
    trial of it was running, the trial is lost: its flow run ends Crashed, its MLflow run
    KILLED, its Optuna trial FAIL, its configuration is queued again with `retry_of` (up to
    `Limits.max_lost_trial_retries`) with a ticket for it, and the slot's lease is released at once.
    """

    def __init__(self, dask_client: Any, events: Any, tickets: Any, study: Any, plan: SlotPlan, log: Any) -> None:
        self.dask_client, self.events, self.tickets, self.study, self.plan = dask_client, events, tickets, study, plan
        self.log = log
        self.running: dict[tuple[str, int], dict[str, Any]] = {}  # (worker, slot) -> the trial it runs
        self.leases: dict[tuple[str, int], str] = {}  # (worker, slot) -> its lease id
        self.lost: list[dict[str, Any]] = []  # every trial lost, retried or not
        self.dead_workers: set[str] = set()

    def check(self, slots_ended: bool = False) -> None:
        """Read the slots' events, and end what dead workers (or, with `slots_ended`, every slot) left behind."""
        for event in self.events.get(batch=True):
            key = (event["worker"], event["slot"])
            kind = event["kind"]
            if kind == "lease":
                self.leases[key] = event["lease"]
            elif kind == "released":
                self.leases.pop(key, None)
            elif kind == "start":
                self.running[key] = event
            elif kind == "end":
                self.running.pop(key, None)
        if slots_ended:
            self._orphans()
        if not self.running and not self.leases:
            return
        alive = set(self.dask_client.scheduler_info(n_workers=-1)["workers"])
        for key in [k for k in {*self.running, *self.leases} if slots_ended or k[0] not in alive]:
            why = "its Dask worker died" if key[0] not in alive else "its slot task ended while it ran"
            if key[0] not in alive:
                self.dead_workers.add(key[0])
            lease = self.leases.pop(key, None)
            if lease is not None:
                release_lease(lease)
            trial = self.running.pop(key, None)
            if trial is not None:
                self._lose(trial, f"trial {trial['number']} was lost: {why} ({key[0]})")

    def _orphans(self) -> None:
        """With every slot ended, a trial still RUNNING in the study is lost (its worker died before telling)."""
        running = import_optuna().trial.TrialState.RUNNING
        known = {int(t["number"]) for t in self.running.values()}
        for t in self.study.get_trials(deepcopy=False, states=(running,)):
            if t.number not in known:
                trial = {"number": t.number, "flow_run_id": t.user_attrs.get("flow_run_id")}
                self._lose(trial, f"trial {t.number} was lost: its slot ended while it ran")

    def _lose(self, trial: dict[str, Any], reason: str) -> None:
        number = int(trial["number"])
        retries = self.plan.trial.max_lost_trial_retries
        lost = lose_trial(self.study, number, reason, retries)
        crash_flow_run(trial["flow_run_id"], reason)
        tracking = self.plan.tracking
        with contextlib.suppress(Exception):  # the store may be unreachable; a resume ends them too
            kill_trial_runs(tracking.tracking.client(), tracking.experiment_id, self.plan.study.name, number)
        if lost is None:  # it had finished (told the study) just before its worker died
            return
        self.lost.append({**lost, "reason": reason})
        if lost["retried"]:
            self.tickets.put(-1 - number)
            self.log(f"{reason}; it runs again as a new trial (retry_of={number}).")
        else:
            self.log(f"{reason}; it was lost {retries + 1} times and is not run again.")
