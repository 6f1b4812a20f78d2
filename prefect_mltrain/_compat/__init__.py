"""Every use of a private Prefect, Optuna, scikit-learn or glibc API, in one place, behind a version guard.

Nothing here is applied when a module is imported: each patch is installed by an explicit call,
named below with its reason. `PRIVATE_APIS` lists every private symbol this package touches;
`tests/test_compat.py` resolves each one on the installed releases and fails loudly, naming
the symbol, when an upgrade moves it.

| module | what it uses | why | installed by |
|---|---|---|---|
| `heartbeats` | `prefect.flow_engine._send_heartbeats` (replaced) | Prefect 3.8's heartbeat thread sleeps in whole seconds, so every sync flow run returns up to 1 s after its body ends | `install()`: the CLI, `prefect_mltrain.flows.use_fast_heartbeats()` |
| `prefect_server` | `AioSqliteConfiguration.begin_transaction` (replaced) | SQLite writers queue (`BEGIN IMMEDIATE`) instead of a 503 and a 2 s retry | `python -m prefect_mltrain.server.sqlite_server` only |
| `prefect_engine` | `TaskRunContext.__var__`, `flow_engine.run_flow`, `POST /flows/` and `/flow_runs/` with client schemas, `PrefectDaskFuture(...)` | a sweep trial runs as a flow run created in one API call under its slot task; DDP ranks are pinned to workers with `Client.submit` | called by the sweep runner and distributed training |
| `optuna` | `optuna.trial.Trial(study, trial_id)`, `FrozenTrial._trial_id` | a worker continues a trial that another process asked for | called by the sweep runner and study |
| `prefect_settings` | `prefect.context.refresh_global_settings_context` | a script's flow call that starts the embedded server makes Prefect's settings (all threads) see its URL | `prefect_mltrain.flows` when a flow is called with no API configured |
| `sklearn_params` | `sklearn.base.BaseEstimator._validate_params` (called) | an estimator's parameter values are checked by scikit-learn's own rules before any compute starts, not when `fit` runs on a worker | `estimators.sklearn.make_estimator` |
| `glibc` | `mallopt` through ctypes | tensor buffers stay on the heap while training in a Dask worker (Dask's trim settings cost 10-20% throughput) | `training_malloc()` around a training loop |
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateApi:
    """One private symbol: where it lives (`module:attr.attr`) and which compat module uses it."""

    target: str
    used_by: str

    def resolve(self) -> object:
        module, _, attrs = self.target.partition(":")
        obj: object = importlib.import_module(module)
        for attr in attrs.split(".") if attrs else ():
            obj = getattr(obj, attr)
        return obj


PRIVATE_APIS = (
    PrivateApi("prefect.flow_engine:_send_heartbeats", "heartbeats"),
    PrivateApi("prefect.flow_engine:MINIMUM_HEARTBEAT_INTERVAL", "heartbeats"),
    PrivateApi("prefect.flow_engine:BaseFlowRunEngine._build_heartbeat_event_template", "heartbeats"),
    PrivateApi("prefect.flow_engine:BaseFlowRunEngine._emit_flow_run_heartbeat", "heartbeats"),
    PrivateApi("prefect.server.database.configurations:AioSqliteConfiguration.begin_transaction", "prefect_server"),
    PrivateApi("prefect.server.database.configurations:SQLITE_BEGIN_MODE", "prefect_server"),
    PrivateApi("prefect.context:TaskRunContext.__var__", "prefect_engine"),
    PrivateApi("prefect.flow_engine:run_flow", "prefect_engine"),
    PrivateApi("prefect.client.schemas.actions:FlowRunCreate", "prefect_engine"),
    PrivateApi("prefect.client.schemas.objects:FlowRunPolicy", "prefect_engine"),
    PrivateApi("prefect_dask.task_runners:PrefectDaskFuture", "prefect_engine"),
    PrivateApi("optuna.trial:Trial", "optuna"),
    PrivateApi("prefect.context:refresh_global_settings_context", "prefect_settings"),
    PrivateApi("sklearn.base:BaseEstimator._validate_params", "sklearn_params"),
)


def missing() -> list[str]:
    """The private symbols that do not resolve on the installed releases, with the error."""
    problems = []
    for api in PRIVATE_APIS:
        try:
            api.resolve()
        except (ImportError, AttributeError) as exc:
            problems.append(f"{api.target} (used by prefect_mltrain._compat.{api.used_by}): {exc}")
    return problems
