"""Ray Tune's per-trial overhead with trivial trials (run with a Python that has `ray[tune]`).

    /path/to/ray-venv/bin/python benchmarks/ray_tune_trivial.py --trials 20

Kept apart from `sweep_overhead.py` because Ray lives in its own virtual environment.
"""

from __future__ import annotations

import argparse
import time


def trivial(config):  # the same objective as sweep_examples.trivial
    return {"score": -((config["x"] - 0.3) ** 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        trivial,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=2, metric="score", mode="max", max_concurrent_trials=2),
    )
    tuner.fit()  # warm-up
    tuner = tune.Tuner(
        trivial,
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(num_samples=args.trials, metric="score", mode="max", max_concurrent_trials=2),
    )
    started = time.perf_counter()
    tuner.fit()
    per_trial = (time.perf_counter() - started) / args.trials
    print(f"ray tune {ray.__version__}: {per_trial * 1000:.1f} ms/trial ({args.trials} trivial trials, 2 CPUs)")
    ray.shutdown()


if __name__ == "__main__":
    main()
