"""Measure the sweep's orchestration overhead, its scaling and the compute early termination saves.

Every figure is printed next to a baseline measured in the same run on the same machine, so
the ratios stay meaningful on a busy or slow box. Not a test: run it by hand.

    python benchmarks/sweep_overhead.py [--trials 20] [--ray-python /path/to/ray-venv/bin/python]

It starts its own Prefect server (SQLite) and project home in a temporary folder.

Measured:
1. Per-trial orchestration overhead with trivial trials (every trial still a flow run), against
   Optuna in-process ask/tell, a naive subflow-per-trial mapped on prefect-dask and, given a
   Python with `ray[tune]` (`--ray-python`), Ray Tune (`ray_tune_trivial.py`) in the same run.
2. Speed-up of CPU-bound trials on 2 Dask workers against 1 (ideal: 2x).
3. Compute saved by early termination (bandit) at equal best score: epochs and wall time with
   and without the policy over the same grid.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _optuna_in_process(n: int) -> float:
    import optuna
    import sweep_examples as examples

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, examples.trivial({"x": trial.suggest_float("x", 0, 1)})["score"])
    return (time.perf_counter() - started) / n


def _naive_subflows(compute, n: int, stock: bool) -> float:
    """The design we replaced: one Prefect task per trial on Dask, each calling a subflow.

    With `stock`, the workers run the trial subflows with Prefect's own flow-run heartbeats
    (each subflow then returns up to a second after its body); else with this package's.
    """
    import sweep_examples as examples
    from prefect import flow, task

    from prefect_mltrain._compat import heartbeats

    @flow(name="naive-trial")
    def naive_trial(x: float) -> float:
        return examples.trivial({"x": x})["score"]

    @task(name="naive-trial-task")
    def call(x: float) -> float:
        return naive_trial(x)

    @flow(name="naive-sweep")
    def naive(n: int) -> float:
        with compute.task_runner() as runner:
            if stock:  # the workers imported prefect_mltrain.flows in the warm-up, installing ours
                runner.client.run(heartbeats.uninstall)
            try:
                started = time.perf_counter()
                futures = [runner.submit(call, parameters={"x": i / n}) for i in range(n)]
                for f in futures:
                    f.result()
                return (time.perf_counter() - started) / n
            finally:
                if stock:
                    runner.client.run(heartbeats.install)

    return naive(n)


def _sweep(compute, trial, space, n: int, concurrent: int, name: str, **kwargs):
    from prefect_mltrain.flows import sweep
    from prefect_mltrain.sweep import Limits, Objective

    started = time.perf_counter()
    result = sweep(
        trial=trial,
        search_space=space,
        objective=Objective("score", "maximize"),
        limits=Limits(max_total_trials=n, max_concurrent_trials=concurrent),
        seed=0,
        name=name,
        compute=compute,
        **kwargs,
    )
    return time.perf_counter() - started, result


def _ray_tune(python: str, n: int) -> float:
    """Ray Tune's ms/trial from `ray_tune_trivial.py`, run by `python` (Ray lives in its own venv)."""
    script = Path(__file__).with_name("ray_tune_trivial.py")
    done = subprocess.run([python, str(script), "--trials", str(n)], capture_output=True, text=True, timeout=900)
    found = re.search(r"([0-9.]+) ms/trial", done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"{script.name} failed under {python}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(found.group(1)) / 1000


def _compute(workers: int):
    from prefect_mltrain.blocks import DaskCompute

    return DaskCompute(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True},
    )


def _epochs(result) -> int:
    from prefect_mltrain.blocks import MlflowTracking

    client = MlflowTracking().client()
    return sum(
        sum(1 for m in client.get_metric_history(r["mlflow_run_id"], "score") if m.step > 0)
        for r in result.trials
        if r.get("mlflow_run_id")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trivial trials per overhead measurement")
    parser.add_argument(
        "--repeats", type=int, default=3, help="overhead and scaling measurements (the median is printed)"
    )
    parser.add_argument("--cpu-trials", type=int, default=8, help="CPU-bound trials for the scaling figure")
    parser.add_argument("--cpu-seconds", type=float, default=1.5, help="seconds of CPU per CPU-bound trial")
    parser.add_argument("--ray-python", help="a Python with ray[tune] installed, to measure Ray Tune in the same run")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="mltrain-bench-"))
    os.environ["PREFECT_MLTRAIN_HOME"] = str(home)
    from prefect_mltrain.server.stack import start_server, use_server
    from prefect_mltrain.system.net import free_port
    from prefect_mltrain.system.process import stop_pid

    server = start_server(home / "prefect", free_port())
    use_server(server)
    try:
        import sweep_examples as examples

        from prefect_mltrain.sweep import BanditPolicy, FunctionTrial, choice, uniform

        n = args.trials
        two = _compute(2)
        space = {"x": uniform(0, 1)}
        trivial = FunctionTrial(examples.trivial)
        # Warm-up: start the cluster and import on both workers (trials long enough for both slots).
        _sweep(two, FunctionTrial(examples.busy), {"x": uniform(0, 1), "seconds": choice([0.3])}, 4, 2, "warm-up")
        optuna_s = _optuna_in_process(n)
        naive_s = _naive_subflows(two, n, stock=True)
        naive_fixed_s = _naive_subflows(two, n, stock=False)
        per_trial, totals = [], []
        for rep in range(args.repeats):  # alternate small and big sweeps; the median resists noise
            fixed_small, _ = _sweep(two, trivial, space, 2, 2, f"overhead-small-{rep}")
            total, _ = _sweep(two, trivial, space, n + 2, 2, f"overhead-{rep}")
            # Subtract a 2-trial sweep to remove the sweep's fixed cost (MLflow parent, artifacts, charts).
            per_trial.append((total - fixed_small) / n)
            totals.append(total)
        per_trial_s, total = statistics.median(per_trial), statistics.median(totals)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"[overhead] {n} trivial trials, 2 workers, 2 concurrent, median of {args.repeats}")
        print(f"  optuna in-process ask/tell      : {optuna_s * 1000:8.2f} ms/trial")
        print(f"  naive subflow per trial (dask)  : {naive_s * 1000:8.1f} ms/trial (stock Prefect)")
        print(f"  the same, with our heartbeats   : {naive_fixed_s * 1000:8.1f} ms/trial")
        print(
            f"  this sweep (amortised)          : {per_trial_s * 1000:8.1f} ms/trial "
            f"(runs: {', '.join(f'{p * 1000:.0f}' for p in per_trial)}; whole sweep incl. fixed cost: "
            f"{total / (n + 2) * 1000:.1f} ms/trial)"
        )
        print(f"  ratio sweep / naive             : {per_trial_s / naive_s:8.2f}")
        print(f"  ratio sweep / optuna in-process : {per_trial_s / optuna_s:8.0f}")
        if args.ray_python:
            ray_s = _ray_tune(args.ray_python, n)
            print(f"  ray tune (its own venv, 2 CPUs) : {ray_s * 1000:8.1f} ms/trial")
            print(f"  ratio sweep / ray tune          : {per_trial_s / ray_s:8.2f}")

        busy = FunctionTrial(examples.busy)
        cpu_space = {"x": uniform(0, 1), "seconds": choice([args.cpu_seconds])}
        one = _compute(1)
        _sweep(one, trivial, space, 2, 1, "warm-up-one")
        # Median of `repeats`: two busy workers, the Prefect server and the sweep share the cores.
        runs: dict[str, list[float]] = {"f1": [], "f2": [], "t1": [], "t2": []}
        for rep in range(args.repeats):
            runs["f1"].append(_sweep(one, trivial, space, 1, 1, f"fixed-one-{rep}")[0])
            runs["f2"].append(_sweep(two, trivial, space, 2, 2, f"fixed-two-{rep}")[0])
            runs["t1"].append(_sweep(one, busy, cpu_space, args.cpu_trials, 1, f"cpu-one-{rep}")[0])
            runs["t2"].append(_sweep(two, busy, cpu_space, args.cpu_trials, 2, f"cpu-two-{rep}")[0])
        f1, f2, t1, t2 = (statistics.median(runs[k]) for k in ("f1", "f2", "t1", "t2"))
        print(
            f"[scaling] {args.cpu_trials} CPU-bound trials of {args.cpu_seconds} s, median of {args.repeats} "
            f"(the Prefect server and the sweep share the same {os.cpu_count()} CPUs)"
        )
        print(
            f"  1 worker  : {t1:6.2f} s (runs: {', '.join(f'{t:.2f}' for t in runs['t1'])}; "
            f"a trivial 1-trial sweep: {f1:.2f} s)"
        )
        print(
            f"  2 workers : {t2:6.2f} s (runs: {', '.join(f'{t:.2f}' for t in runs['t2'])}; "
            f"a trivial 2-trial sweep: {f2:.2f} s)"
        )
        print(f"  speed-up, whole sweeps         : {t1 / t2:6.2f}x (ideal 2x)")
        print(
            f"  speed-up, trials (fixed cost out): {(t1 - f1) / (t2 - f2):6.2f}x (ideal 2x; the trivial sweeps' "
            f"own trials are taken out too, so this can pass 2x)"
        )

        # Epochs long enough (0.25 s) that stopping a trial frees its slot for a while.
        grid = {"x": choice([0.3, 0.6, 0.9, 1.2, 1.5, 1.8]), "epochs": choice([8]), "epoch_seconds": choice([0.25])}
        curve = FunctionTrial(examples.quadratic)
        tf, full = _sweep(two, curve, grid, 6, 2, "no-policy", sampling_algorithm="grid")
        tp, pruned = _sweep(
            two,
            curve,
            grid,
            6,
            2,
            "bandit",
            sampling_algorithm="grid",
            early_termination=BanditPolicy(slack_factor=0.05, delay_evaluation=2),
        )
        ef, ep = _epochs(full), _epochs(pruned)
        print(
            "[early termination] 6-point grid, 8 epochs of 0.25 s each, 2 workers, "
            "bandit slack_factor=0.05 delay_evaluation=2"
        )
        print(f"  without policy : {ef:3d} epochs, best {full.best_value:.4f}, {tf:.2f} s")
        print(
            f"  with bandit    : {ep:3d} epochs, best {pruned.best_value:.4f}, {tp:.2f} s, "
            f"{sum(r['state'] == 'PRUNED' for r in pruned.trials)} trials stopped"
        )
        print(
            f"  saved          : {1 - ep / ef:6.1%} of epochs, {1 - tp / tf:6.1%} of wall time, "
            f"at equal best: {abs(full.best_value - pruned.best_value) < 1e-9}"
        )
    finally:
        from prefect_mltrain.blocks.compute import close_shared_clusters

        close_shared_clusters()
        stop_pid(server.pid)


if __name__ == "__main__":
    main()
