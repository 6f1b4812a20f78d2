"""Where a sweep's per-trial CPU goes: the Prefect server, the flow process and each Dask worker.

    python benchmarks/sweep_cpu.py [--trials 40]

Runs a warm-up sweep, then a sweep of trivial trials on 2 workers, and prints each process's
CPU time per trial and its share of the total, measured in the same run. On a machine with
fewer cores than busy processes, the total per trial over the core count is the floor of the
sweep's amortised cost per trial. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    from _stack import local_stack

    with local_stack():
        import psutil
        import sweep_examples as examples

        from prefect_mltrain.blocks import DaskCompute
        from prefect_mltrain.blocks.compute import close_shared_clusters
        from prefect_mltrain.flows import sweep
        from prefect_mltrain.sweep import FunctionTrial, Limits, Objective, uniform

        two = DaskCompute(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True},
        )

        def run(name: str, n: int) -> float:
            started = time.perf_counter()
            sweep(
                trial=FunctionTrial(examples.trivial),
                search_space={"x": uniform(0, 1)},
                objective=Objective("score", "maximize"),
                seed=0,
                name=name,
                compute=two,
                limits=Limits(max_total_trials=n, max_concurrent_trials=2),
            )
            return time.perf_counter() - started

        try:
            run("warm-up", 4)
            me = psutil.Process()
            procs = {"flow process (and Dask scheduler)": me}
            workers = 0
            for child in me.children(recursive=True):
                if "prefect_mltrain.server.sqlite_server" in " ".join(child.cmdline()):
                    procs["prefect server"] = child
                elif "python" in child.name() and child.cpu_times().user > 0.5:  # not the idle forkserver
                    procs[f"dask worker {workers}"] = child
                    workers += 1

            def cpu() -> dict[str, float]:
                return {k: p.cpu_times().user + p.cpu_times().system for k, p in procs.items()}

            before = cpu()
            wall = run("measured", args.trials)
            used = {k: v - before[k] for k, v in cpu().items()}
        finally:
            close_shared_clusters()
    total = sum(used.values())
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(
        f"[cpu per trial] {args.trials} trivial trials, 2 workers, 2 concurrent: "
        f"{wall / args.trials * 1000:.0f} ms/trial of wall time"
    )
    for k, v in sorted(used.items()):
        print(f"  {k:36s}: {v / args.trials * 1000:6.1f} ms/trial ({v / total:5.1%})")
    print(
        f"  {'all':36s}: {total / args.trials * 1000:6.1f} ms/trial; over {os.cpu_count()} cores: "
        f"{total / args.trials / (os.cpu_count() or 1) * 1000:.0f} ms/trial at best"
        + ("" if "prefect server" in used else " (the server is not ours: PREFECT_API_URL is set)")
    )


if __name__ == "__main__":
    main()
