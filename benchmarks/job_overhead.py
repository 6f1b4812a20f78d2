"""Overhead of `train_job` over running the same script directly, measured side by side.

    python benchmarks/job_overhead.py [--repeats 5]

Direct and orchestrated runs alternate, so machine noise hits both alike; the figures that
matter are the per-job difference and the ratio, both printed. Target: under 2 s per job.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCRIPTS = {
    "trivial": "print('done')\n",
    "iris-mlflow": (
        "import mlflow\nfrom sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True)\n"
        "mlflow.log_metric('accuracy', LogisticRegression(max_iter=300).fit(X, y).score(X, y))\n"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from _stack import local_stack

    with local_stack():
        from prefect_mltrain.blocks import DaskCompute, MlflowTracking
        from prefect_mltrain.flows import train_job

        logging.getLogger("prefect").setLevel(logging.WARNING)
        compute = DaskCompute(cluster_class="distributed.LocalCluster", cluster_kwargs={"n_workers": 1})
        tracking = MlflowTracking()
        experiment_id = tracking.ensure_experiment()
        print(f"{'script':<12} {'direct s':>9} {'train_job s':>12} {'overhead s':>11} {'ratio':>6}")
        for name, code in SCRIPTS.items():
            source = Path(tempfile.mkdtemp())
            (source / "job.py").write_text(code)
            train_job(script="job.py", source_directory=str(source), compute=compute)  # warm cluster, env, store
            direct, orchestrated = [], []
            for _ in range(args.repeats):
                with tracking.start_run(experiment_id) as run:  # the direct run gets a run to log to as well
                    env = {**os.environ, **tracking.environment_variables(run.info.run_id, experiment_id)}
                    started = time.perf_counter()
                    subprocess.run([sys.executable, "job.py"], cwd=source, env=env, check=True, capture_output=True)
                    direct.append(time.perf_counter() - started)
                started = time.perf_counter()
                train_job(script="job.py", source_directory=str(source), compute=compute)
                orchestrated.append(time.perf_counter() - started)
            d, o = statistics.median(direct), statistics.median(orchestrated)
            print(f"{name:<12} {d:>9.2f} {o:>12.2f} {o - d:>11.2f} {o / d:>6.2f}")
        print("(medians of", args.repeats, "alternating runs; overhead = train_job - direct; target < 2 s)")


if __name__ == "__main__":
    main()
