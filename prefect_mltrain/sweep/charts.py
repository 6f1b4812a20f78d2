"""Pictures of a sweep: the objective over trials and a parallel-coordinates view.

Two forms: a markdown artifact on the sweep's flow run (text charts that render anywhere,
plus every early-termination decision), and PNG figures drawn with Optuna's matplotlib
plots, logged to the sweep's MLflow parent run under `charts/`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

_BAR = 30


def _bar(fraction: float) -> str:
    n = max(0, min(_BAR, round(fraction * _BAR)))
    return "█" * n + "·" * (_BAR - n)


def objective_chart(rows: list[dict[str, Any]], metric: str, maximize: bool) -> str:
    """A text chart of the objective by trial number, with the running best.

    >>> print(objective_chart([{"trial": 0, "state": "COMPLETE", "m": 1.0},
    ...                        {"trial": 1, "state": "COMPLETE", "m": 2.0}], "m", True).splitlines()[-1])
    | 1 | COMPLETE | 2 | ██████████████████████████████ | 2 |
    """
    ordered = sorted(rows, key=lambda r: r["trial"])
    values = [r[metric] for r in ordered if r.get(metric) is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    span = (hi - lo) or 1.0
    lines = [
        f"| trial | state | {metric} | {'higher' if maximize else 'lower'} is better | best so far |",
        "|---|---|---|---|---|",
    ]
    best: float | None = None
    for r in ordered:
        v = r.get(metric)
        if v is not None and (best is None or (v > best if maximize else v < best)):
            best = v
        frac = 0.0 if v is None else ((v - lo) / span if maximize else (hi - v) / span)
        shown = "" if v is None else f"{v:.6g}"
        lines.append(
            f"| {r['trial']} | {r['state']} | {shown} | {_bar(frac) if v is not None else ''} | "
            f"{'' if best is None else f'{best:.6g}'} |"
        )
    return "\n".join(lines)


def parallel_coordinates(rows: list[dict[str, Any]], params: list[str], metric: str) -> str:
    """A text parallel-coordinates view: each numeric parameter scaled to 0..9 per trial, best first.

    Categorical parameters show their value. Reading down a column shows which region the
    best trials share.
    """
    numeric = {
        p: [r[p] for r in rows if isinstance(r.get(p), (int, float)) and not isinstance(r.get(p), bool)] for p in params
    }
    header = f"| {metric} | " + " | ".join(params) + " |"
    lines = [header, "|" + "---|" * (len(params) + 1)]
    for r in rows:
        if r.get(metric) is None:
            continue
        cells = []
        for p in params:
            v = r.get(p)
            vals = numeric[p]
            if vals and isinstance(v, (int, float)) and not isinstance(v, bool):
                lo, hi = min(vals), max(vals)
                level = 0 if hi == lo else round(9 * (v - lo) / (hi - lo))
                cells.append(f"{'▁▂▃▄▅▆▇█▉█'[level]} {v:.4g}")
            else:
                cells.append(str(v))
        lines.append(f"| {r[metric]:.6g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pngs(study: Any, directory: Path) -> list[Path]:
    """Optuna's optimization-history and parallel-coordinate plots as PNGs (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as oplt
    except ImportError:
        return []
    made = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for filename, plot in (
            ("objective_over_trials.png", oplt.plot_optimization_history),
            ("parallel_coordinates.png", oplt.plot_parallel_coordinate),
        ):
            try:
                axes: Any = plot(study)
                fig: Any = axes.figure if hasattr(axes, "figure") else axes[0].figure
                fig.set_size_inches(9, 5)
                fig.tight_layout()
                path = directory / filename
                fig.savefig(path, dpi=90)
                plt.close(fig)
                made.append(path)
            except Exception:  # a plot that cannot be drawn (e.g. one trial) is skipped, not fatal
                continue
    return made


def publish(
    name: str,
    study: Any,
    goal: Any,
    rows: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    client: Any,
    parent_run_id: str,
    policy: Any,
) -> list[str]:
    """Create the sweep's chart artifacts and log the PNGs to the MLflow parent run.

    Returns:
        The artifact paths of the PNGs in the parent run.
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    logged = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in _pngs(study, Path(tmp)):
            client.log_artifact(parent_run_id, str(path), "charts")
            logged.append(f"charts/{path.name}")
    params = list((study.user_attrs.get("search_space") or {}).keys())
    md = [
        f"## Sweep `{name}`: {goal.primary_metric} ({goal.goal})",
        "",
        "### Objective over trials",
        "",
        objective_chart(rows, goal.primary_metric, goal.maximize),
        "",
        "### Parallel coordinates (best first; bars scale each parameter to its range)",
        "",
        parallel_coordinates(rows, params, goal.primary_metric),
        "",
    ]
    if logged:
        md += [
            "### Figures",
            "",
            f"PNG figures in MLflow run `{parent_run_id}`: " + ", ".join(f"`{p}`" for p in logged),
            "",
        ]
    create_markdown_artifact(
        key=f"{name}-charts",
        markdown="\n".join(md),
        description="Objective over trials and a parallel-coordinates view.",
    )
    if policy is not None:
        create_table_artifact(
            key=f"{name}-early-termination",
            table=decisions or [{"trial": None, "reason": "no trial was stopped"}],
            description=f"Every trial stopped by {policy.type} ({policy.to_dict()}), with the reason.",
        )
    return logged
