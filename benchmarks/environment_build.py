"""Environment build costs, side by side, each compared with a baseline measured in this run.

    python benchmarks/environment_build.py [--repeat 5] [--no-docker]

1. Virtualenv, same spec: cold build with pip (baseline) vs cold build with uv, both with
   empty download caches.
2. Virtualenv: cold build (baseline) vs cache hit.
3. Docker image, same spec: cold build (baseline; pip inside without a cache) vs the engine's own layer cache (what a
   plain `docker build` of an unchanged Dockerfile costs) vs our cache hit (tag lookup).

Needs network access to the package index; the Docker part needs an engine and the base
image (`bash .ci/docker-setup.sh`). Times are wall-clock seconds on this machine; compare
ratios, not seconds, across machines.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = ["requests==2.32.3", "PyYAML==6.0.2", "tqdm==4.67.1"]
BASE_IMAGE = os.environ.get("PREFECT_MLTRAIN_BASE_IMAGE", "prefect-mltrain-base:bookworm")


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_of(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeat))


def row(label: str, seconds: float, baseline: float) -> None:
    print(f"  {label:<48} {seconds:9.4f} s   x{seconds / baseline:8.4f} of baseline")


def venv_part(repeat: int) -> None:
    from prefect_mltrain.blocks import TrainingEnvironment
    from prefect_mltrain.environments.build import build

    env = TrainingEnvironment(pip_requirements=REQUIREMENTS)
    print(f"virtualenv, pip_requirements={REQUIREMENTS}")
    with (
        tempfile.TemporaryDirectory() as pip_dir,
        tempfile.TemporaryDirectory() as uv_dir,
        tempfile.TemporaryDirectory() as caches,
    ):
        # Empty download caches for both installers, so "cold" means cold.
        os.environ["UV_CACHE_DIR"] = os.path.join(caches, "uv")
        os.environ["PIP_CACHE_DIR"] = os.path.join(caches, "pip")
        pip_cold = timed(lambda: build(env, Path(pip_dir), installer="pip"))
        uv_cold = timed(lambda: build(env, Path(uv_dir), installer="uv"))
        hit = median_of(lambda: build(env, Path(uv_dir), installer="uv"), repeat)
    row("cold build, pip (baseline)", pip_cold, pip_cold)
    row("cold build, uv", uv_cold, pip_cold)
    print(f"  uv is {pip_cold / uv_cold:.1f}x faster than pip for this spec")
    row("cold build, uv (baseline)", uv_cold, uv_cold)
    row(f"cache hit (median of {repeat})", hit, uv_cold)


def docker_part(repeat: int) -> None:
    from prefect_mltrain.blocks import TrainingEnvironment
    from prefect_mltrain.environments.build import build
    from prefect_mltrain.environments.docker_build import image_tag
    from prefect_mltrain.system.docker_engine import docker_client

    client = docker_client()
    env = TrainingEnvironment(docker_image=BASE_IMAGE, pip_requirements=REQUIREMENTS)
    tag = image_tag(env.content_hash())
    print(f"docker image {tag}: {BASE_IMAGE} + {REQUIREMENTS}")

    def forget(keep_layers: bool) -> None:
        if client.images.list(name=tag):
            client.images.remove(tag, force=True, noprune=keep_layers)

    forget(keep_layers=False)  # no tag and no layers: a true cold build
    cold = timed(lambda: build(env))
    layer_cached = []
    for _ in range(repeat):
        forget(keep_layers=True)  # the layers stay, so the engine's build cache answers
        layer_cached.append(timed(lambda: build(env)))
    hit = median_of(lambda: build(env), repeat)
    row("cold build (baseline)", cold, cold)
    row(f"engine layer cache rebuild (median of {repeat})", statistics.median(layer_cached), cold)
    row(f"unchanged spec, our cache hit (median of {repeat})", hit, cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="Repetitions of the fast measurements.")
    parser.add_argument("--no-docker", action="store_true", help="Skip the Docker part.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("PREFECT_MLTRAIN_HOME", tempfile.mkdtemp(prefix="mltrain-bench-"))
    venv_part(args.repeat)
    if not args.no_docker:
        docker_part(args.repeat)


if __name__ == "__main__":
    main()
