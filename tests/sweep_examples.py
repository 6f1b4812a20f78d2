"""Small trial functions for demos, benchmarks and tests (importable on every Dask worker).

Use them as `{"type": "function", "entrypoint": "sweep_examples:quadratic"}`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prefect_mltrain.sweep.trial import TrialContext


def trivial(params: dict[str, Any]) -> dict[str, float]:
    """Return at once: `score = -(x - 0.3)^2`; for measuring orchestration overhead."""
    return {"score": -((float(params.get("x", 0.0)) - 0.3) ** 2)}


def quadratic(params: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """A learning curve over `epochs` steps whose plateau is best at x=0.3.

    Reports `score` each epoch, so early-termination policies can act on it.
    """
    x = float(params.get("x", 0.0))
    epochs = int(params.get("epochs", 5))
    plateau = 1.0 - (x - 0.3) ** 2
    score = 0.0
    for epoch in range(1, epochs + 1):
        score = plateau * (1 - math.exp(-epoch / 2))
        context.report({"score": score}, step=epoch)
        time.sleep(float(params.get("epoch_seconds", 0.0)))
    return {"score": score}


def busy(params: dict[str, Any]) -> dict[str, float]:
    """Burn CPU for about `seconds` (pure Python, holds the GIL), then score `x`."""
    deadline = time.perf_counter() + float(params.get("seconds", 0.5))
    n = 0
    while time.perf_counter() < deadline:
        n += sum(i * i for i in range(1000))
    return {"score": -((float(params.get("x", 0.0)) - 0.3) ** 2), "work": float(n)}


def no_metric(params: dict[str, Any]) -> dict[str, float]:
    """Report a metric other than the one a sweep asks for (to show the error)."""
    return {"loss": 1.0}


def flaky(params: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Fail on the first attempt of every trial, succeed on a retry (per-process memory)."""
    key = (context.number, context.mlflow_env.get("MLFLOW_TRACKING_URI"))
    if key not in _attempts:
        _attempts.add(key)
        raise RuntimeError(f"trial {context.number}: simulated crash on the first attempt")
    return {"score": float(params.get("x", 0.0))}


_attempts: set[Any] = set()


def heartbeat_probe(params: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Score `x` and count the flow-run heartbeat threads running in this trial (0 when off)."""
    import threading

    from prefect_mltrain._compat.heartbeats import THREAD_NAME

    beating = sum(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate())
    return {"score": float(params.get("x", 0.0)), "heartbeat_threads": float(beating)}
