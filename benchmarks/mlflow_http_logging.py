"""A job that logs 1,000 metrics: over HTTP to the project's MLflow server vs straight into SQLite.

    python benchmarks/mlflow_http_logging.py [--repeats 3] [--metrics 1000]

Before the MLflow server, jobs wrote into the project's SQLite file directly; now they log over
HTTP. The same `train_job` runs a script that times its own 1,000 `mlflow.log_metric` calls, once
with the default tracking (the server) and once with `MlflowTracking(tracking_uri="sqlite:///...")`,
alternating so machine noise hits both alike. Printed: each job's logging time and wall time, and
the ratios HTTP / SQLite (medians). Target: no worse than 1.2x.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCRIPT = """
import sys, time, mlflow
n = int(sys.argv[1])
started = time.perf_counter()
for step in range(n):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
mlflow.end_run()  # flushes what is buffered
print(f"LOGGED {time.perf_counter() - started:.4f}", flush=True)
"""


def _logging_seconds(tracking: Any, run_id: str) -> float:
    """What the script measured, from the job's user log (an artifact of its MLflow run)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tracking.client().download_artifacts(run_id, "user_logs/std_log.txt", tmp))
        line = next(m for m in log.read_text().splitlines() if "LOGGED" in m)
    return float(line.split("LOGGED", 1)[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metrics", type=int, default=1000)
    args = parser.parse_args()
    from _stack import local_stack

    with local_stack() as home:
        from prefect_mltrain.blocks import MlflowTracking
        from prefect_mltrain.flows import train_job

        logging.getLogger("prefect").setLevel(logging.WARNING)
        source = Path(tempfile.mkdtemp())
        (source / "log_many.py").write_text(SCRIPT)
        stores = {"http": MlflowTracking(), "sqlite": MlflowTracking(tracking_uri=f"sqlite:///{home / 'direct.db'}")}
        stores["sqlite"].ensure_experiment()  # the store's schema made once, as the old default did
        seen: dict[str, dict[str, list[float]]] = {name: {"log": [], "wall": []} for name in stores}
        for _ in range(args.repeats):
            for name, tracking in stores.items():
                started = time.perf_counter()
                result = train_job(
                    script="log_many.py", arguments=[args.metrics], source_directory=str(source), tracking=tracking
                )
                seen[name]["wall"].append(time.perf_counter() - started)
                seen[name]["log"].append(_logging_seconds(tracking, result.mlflow_run_id))
                points = tracking.client().get_metric_history(result.mlflow_run_id, "loss")
                assert len(points) == args.metrics, (name, len(points))
        med = {name: {k: statistics.median(v) for k, v in runs.items()} for name, runs in seen.items()}
        print(f"{args.metrics} log_metric calls in a job, medians of {args.repeats}:")
        for name in stores:
            print(f"  {name:<7} logging {med[name]['log']:7.2f} s   job wall {med[name]['wall']:7.2f} s")
        print(
            f"  ratio HTTP / SQLite: logging {med['http']['log'] / med['sqlite']['log']:.2f}x, "
            f"job wall {med['http']['wall'] / med['sqlite']['wall']:.2f}x (target <= 1.2x)"
        )


if __name__ == "__main__":
    main()
