"""Put on a job's PYTHONPATH by prefect-mltrain: the job's MLflow run is active from the import of mlflow.

Without it, `mlflow.autolog()` ends the run it resumes from MLFLOW_RUN_ID after `fit()`, MLflow
forgets MLFLOW_RUN_ID, and the script's next `mlflow.log_metric` opens an orphan run. Nothing
is imported until the script itself imports mlflow; then the sitecustomize this one shadows,
if any, still runs.

A Python job may start before its MLflow run exists (the flow creates the run meanwhile). It
then gets MLTRAIN_RUN_ID_FILE instead of MLFLOW_RUN_ID, and `import mlflow` waits for that
file (at most MLTRAIN_RUN_ID_TIMEOUT seconds) and puts MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID
into os.environ before the run is activated, so child processes inherit them too. The flow
writes the file atomically (a rename): it is complete whenever it exists. This file imports
nothing of prefect_mltrain: it also runs in Docker images that lack it.
"""

import importlib.abc
import importlib.util
import json
import os
import sys
import time

RUN_ID_FILE = "MLTRAIN_RUN_ID_FILE"
RUN_ID_TIMEOUT = "MLTRAIN_RUN_ID_TIMEOUT"


def _wait_for_run_file():
    """Set MLFLOW_RUN_ID (and MLFLOW_EXPERIMENT_ID) from the run-id file, waiting for it."""
    path = os.environ[RUN_ID_FILE]
    try:
        timeout = float(os.environ.get(RUN_ID_TIMEOUT) or 120)
    except ValueError:
        raise ValueError(
            "prefect-mltrain: %s must be a number of seconds, but got %r."
            % (RUN_ID_TIMEOUT, os.environ[RUN_ID_TIMEOUT])
        ) from None
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise TimeoutError(
                "prefect-mltrain: this job's MLflow run id did not arrive in %s within %s s "
                "(%s, %s). The flow that started the job creates the run and writes that file; "
                "look at its logs for why it did not. Fix: raise %s if the tracking store is "
                "just slow." % (path, timeout, RUN_ID_FILE, RUN_ID_TIMEOUT, RUN_ID_TIMEOUT)
            )
        time.sleep(0.02)
    with open(path) as handle:
        run = json.load(handle)
    if run.get("error"):
        raise RuntimeError("prefect-mltrain: this job's MLflow run could not be created: %s" % run["error"])
    os.environ["MLFLOW_RUN_ID"] = run["run_id"]
    os.environ["MLFLOW_EXPERIMENT_ID"] = run["experiment_id"]


class _ActivateJobRun(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: D102
        if name != "mlflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_activate(module):
            exec_module(module)  # first, so importing mlflow overlaps the creation of the run
            if not os.environ.get("MLFLOW_RUN_ID") and os.environ.get(RUN_ID_FILE):
                _wait_for_run_file()
            run_id = os.environ.get("MLFLOW_RUN_ID")
            if run_id and module.active_run() is None:
                module.start_run(run_id=run_id)

        spec.loader.exec_module = exec_and_activate
        return spec


if os.environ.get("MLFLOW_RUN_ID") or os.environ.get(RUN_ID_FILE):
    sys.meta_path.insert(0, _ActivateJobRun())


def _chain_shadowed_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if os.path.abspath(entry or ".") == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


_chain_shadowed_sitecustomize()
