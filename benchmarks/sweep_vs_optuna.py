"""The 24-trial SVC-on-digits sweep, 2 trials at a time: ours on a warm stack vs plain Optuna.

    python benchmarks/sweep_vs_optuna.py [--rounds 3] [--trials 24] [--ray-python /path/to/ray-venv/bin/python]

In the same run, alternating, `--rounds` times each (medians printed):
- ours: `sweep(FunctionTrial(svc))` on the default compute, i.e. the home's warm Dask cluster,
  started beforehand as `prefect-mltrain server start` does (workers up, imports preloaded);
- plain Optuna: ask/tell in this process, each trial run in a pool of 2 loky processes
  (joblib's), started anew for each sweep as a script of its own would;
- Ray Tune, only with `--ray-python` (Ray lives in its own virtual environment).

Each trial writes its start and end time; printed per system: wall time from the call, time
from the call to the first trial's start, the mean trial body, and the steady per-trial
overhead: (last end - first start) x concurrency / trials - mean body. Targets (issue 15):
ours / Optuna-loky wall <= 1.5, first trial <= 2 s after the call, overhead <= 100 ms. The
first round of ours is printed alone (this process's first flow call: Prefect's client, the
MLflow experiment, ...); ours' medians are of the later rounds. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CONCURRENT = 2
os.environ.setdefault("PREFECT_MLTRAIN_WARM_COMPUTE", "true")  # ours on the (opt-in) warm compute
TIMES = os.environ.get("SVC_BENCH_TIMES") or str(Path(tempfile.gettempdir()) / f"svc-bench-{os.getpid()}.txt")


def svc(params: dict[str, float]) -> dict[str, float]:
    """The trial: an RBF SVC fit on 75% of digits, scored on the rest; logs its own start and end."""
    start = time.time()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    x_train, x_test, y_train, y_test = train_test_split(*load_digits(return_X_y=True), random_state=0)
    model = SVC(C=params["C"], gamma=params["gamma"]).fit(x_train, y_train)
    score = float(model.score(x_test, y_test))
    with open(TIMES, "a") as out:
        out.write(f"{start} {time.time()}\n")
    return {"score": score}


def _figures(called: float, ended: float, trials: int) -> dict[str, float]:
    spans = [tuple(map(float, line.split())) for line in Path(TIMES).read_text().split("\n") if line]
    Path(TIMES).unlink()
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    body = statistics.mean(e - s for s, e in spans)
    steady = (last - first) * CONCURRENT / len(spans)
    assert len(spans) == trials, f"{len(spans)} trials ran, {trials} expected"
    return {"wall": ended - called, "first": first - called, "body": body, "overhead": steady - body}


def ours(name: str, trials: int) -> dict[str, float]:
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, loguniform

    called = time.time()
    sweep(
        trial=FunctionTrial(svc),
        search_space={"C": loguniform(0.1, 100), "gamma": loguniform(1e-4, 1e-2)},
        objective=Objective("score", "maximize"),
        limits=Limits(max_total_trials=trials, max_concurrent_trials=CONCURRENT),
        seed=0,
        name=name,
    )
    return _figures(called, time.time(), trials)


def optuna_loky(trials: int) -> dict[str, float]:
    import optuna
    from joblib.externals.loky import get_reusable_executor

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    called = time.time()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    pool = get_reusable_executor(max_workers=CONCURRENT, reuse=False)
    running: dict = {}
    asked = 0
    while asked < trials or running:
        while asked < trials and len(running) < CONCURRENT:
            trial = study.ask()
            params = {"C": trial.suggest_float("C", 0.1, 100, log=True)}
            params["gamma"] = trial.suggest_float("gamma", 1e-4, 1e-2, log=True)
            running[pool.submit(svc, params)] = trial
            asked += 1
        done = next(f for f in _first_done(running))
        study.tell(running.pop(done), done.result()["score"])
    ended = time.time()
    pool.shutdown(kill_workers=True)
    return _figures(called, ended, trials)


def _first_done(running: dict) -> list:
    from concurrent.futures import FIRST_COMPLETED, wait

    return list(wait(running, return_when=FIRST_COMPLETED).done)


RAY_SCRIPT = """
import sys, time
sys.path.insert(0, {folder!r})
import ray
from ray import tune
from sweep_vs_optuna import svc
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
called = time.time()
tune.Tuner(svc, param_space={{"C": tune.loguniform(0.1, 100), "gamma": tune.loguniform(1e-4, 1e-2)}},
    tune_config=tune.TuneConfig(num_samples={trials}, metric="score", mode="max", max_concurrent_trials=2)).fit()
print("CALLED", called, "ENDED", time.time())
"""


def ray_tune(python: str, trials: int) -> dict[str, float]:
    script = RAY_SCRIPT.format(folder=str(Path(__file__).resolve().parent), trials=trials)
    env = dict(os.environ, SVC_BENCH_TIMES=TIMES)
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    words = out.split("CALLED", 1)[1].split()
    return _figures(float(words[0]), float(words[2]), trials)


def _warm_stack() -> None:
    """What `prefect-mltrain server start` leaves: the home's warm cluster, its workers ready."""
    from distributed import Client

    from prefect_mltrain.compute.warm import ensure_warm_compute

    warm = ensure_warm_compute(api_url=os.environ["PREFECT_API_URL"])
    with Client(warm.address, timeout=60) as client:
        client.wait_for_workers(warm.n_workers, timeout=180)


def _line(label: str, runs: list[dict[str, float]]) -> dict[str, float]:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"  {label:34s}: wall {med['wall']:6.2f} s | first trial after {med['first']:5.2f} s | "
        f"body {med['body'] * 1000:5.0f} ms | steady overhead {med['overhead'] * 1000:6.0f} ms/trial"
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--ray-python", help="a Python with ray[tune], to run Ray Tune in the same run")
    args = parser.parse_args()
    from _stack import local_stack

    with local_stack():
        from prefect_mltrain.compute.warm import stop_warm_compute

        try:
            _warm_stack()
            mine, theirs, ray = [], [], []
            for i in range(args.rounds):
                mine.append(ours(f"svc-{i}", args.trials))
                theirs.append(optuna_loky(args.trials))
                if args.ray_python:
                    ray.append(ray_tune(args.ray_python, args.trials))
        finally:
            stop_warm_compute()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(
        f"[sweep vs optuna] {args.trials} SVC-on-digits trials, {CONCURRENT} at a time, medians of {args.rounds} (ours: of the {max(args.rounds - 1, 1)} after the first call):"
    )
    first = mine[0]
    print(
        f"  ours, first call of the process    : wall {first['wall']:6.2f} s | first trial after "
        f"{first['first']:5.2f} s | steady overhead {first['overhead'] * 1000:6.0f} ms/trial"
    )
    a = _line("ours (warm stack, default compute)", mine[1:] or mine)  # later calls: the process is warm too
    b = _line("optuna + 2 loky processes", theirs)
    print(f"  ratio ours / optuna-loky wall      : {a['wall'] / b['wall']:6.2f}  (target <= 1.5)")
    print(f"  ours first trial after the call    : {a['first']:6.2f} s (target <= 2 s)")
    print(f"  ours steady overhead per trial     : {a['overhead'] * 1000:6.0f} ms (target <= 100 ms)")
    if ray:
        c = _line("ray tune (its own venv, 2 CPUs)", ray)
        print(f"  ratio ours / ray tune wall         : {a['wall'] / c['wall']:6.2f}")


if __name__ == "__main__":
    main()
