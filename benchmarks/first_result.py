"""Time to the first result: warm `prefect-mltrain demo` against the same work in a bare script.

The same fit (LogisticRegression on iris), the same MLflow logging (params, metrics, an MLflow
model folder) in the same kind of store, run as a fresh process each time, in one run:

- `bare`: a script that fits and logs with the MLflow client, nothing else;
- `demo`: `prefect-mltrain demo` on a warm embedded stack (its server already up), which also
  makes a Prefect flow run, runs the fit as a task, registers the model as a block.

Also printed: the model save alone with inferred requirements (MLflow's default) against the
explicit pinned requirements this package writes (`tracking.models.save_sklearn_model`).

Targets (issue 15): demo <= 5 s, demo / bare <= 2.
Usage: python benchmarks/first_result.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _stack import local_stack

BARE = """
import sys, tempfile, mlflow, mlflow.sklearn
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
X, y = load_iris(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
model = LogisticRegression(max_iter=500).fit(Xtr, ytr)
client = MlflowClient(tracking_uri=sys.argv[1])
exp = client.get_experiment_by_name("bare") or client.get_experiment(client.create_experiment("bare"))
run = client.create_run(exp.experiment_id)
client.log_param(run.info.run_id, "max_iter", 500)
client.log_metric(run.info.run_id, "accuracy", model.score(Xte, yte))
with tempfile.TemporaryDirectory() as tmp:
    mlflow.sklearn.save_model(model, tmp + "/model", input_example=Xtr[:5]{requirements})
    client.log_artifacts(run.info.run_id, tmp + "/model", "model")
client.set_terminated(run.info.run_id)
print("accuracy", model.score(Xte, yte))
"""


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with local_stack() as home:
        from prefect_mltrain.blocks import MlflowTracking

        uri = MlflowTracking().resolved_tracking_uri()
        exe = str(Path(sys.executable).with_name("prefect-mltrain"))
        with tempfile.TemporaryDirectory() as tmp:
            inferred, explicit = Path(tmp) / "inferred.py", Path(tmp) / "explicit.py"
            inferred.write_text(BARE.format(requirements=""))
            reqs = "['mlflow', 'scikit-learn', 'skops']"
            explicit.write_text(BARE.format(requirements=f", pip_requirements={reqs}"))
            _timed([exe, "demo", "--model-name", f"warmup-{uuid.uuid4().hex[:6]}"])  # the stack is warm now
            rows: dict[str, list[float]] = {"bare (inferred requirements)": [], "bare (explicit)": [], "demo": []}
            for _ in range(args.repeats):  # interleaved, so load drifts hit all three alike
                rows["bare (inferred requirements)"].append(_timed([sys.executable, str(inferred), uri]))
                rows["bare (explicit)"].append(_timed([sys.executable, str(explicit), uri]))
                rows["demo"].append(_timed([exe, "demo", "--model-name", f"bench-{uuid.uuid4().hex[:6]}"]))
        medians = {name: statistics.median(values) for name, values in rows.items()}
        print(f"\nfirst result, medians of {args.repeats} (home {home}):")
        for name, value in medians.items():
            print(f"  {name:<30} {value:6.2f} s   {', '.join(f'{v:.2f}' for v in rows[name])}")
        base = medians["bare (explicit)"]
        print(f"  demo / bare (explicit)         {medians['demo'] / base:6.2f}x   (target <= 2; demo target <= 5 s)")
        print(f"  inferred / explicit (bare)     {medians['bare (inferred requirements)'] / base:6.2f}x")


if __name__ == "__main__":
    main()
