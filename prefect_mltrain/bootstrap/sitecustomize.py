"""Put on a job's PYTHONPATH by prefect-mltrain: the job's MLflow run is active from the import of mlflow.

Without it, `mlflow.autolog()` ends the run it resumes from MLFLOW_RUN_ID after `fit()`, MLflow
forgets MLFLOW_RUN_ID, and the script's next `mlflow.log_metric` opens an orphan run. Nothing
is imported until the script itself imports mlflow; then the sitecustomize this one shadows,
if any, still runs.
"""

import importlib.abc
import importlib.util
import os
import sys


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
            exec_module(module)
            run_id = os.environ.get("MLFLOW_RUN_ID")
            if run_id and module.active_run() is None:
                module.start_run(run_id=run_id)

        spec.loader.exec_module = exec_and_activate
        return spec


if os.environ.get("MLFLOW_RUN_ID"):
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
