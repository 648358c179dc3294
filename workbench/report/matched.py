"""Effects at matched compute: each run's objective at the same training FLOPs or images seen.

Configurations cost different amounts per step (sparser cross-attention is cheaper; a stricter
MMC4 filter shows fewer images per step), so a comparison at matched steps can mislead. Each
run's objective is read off its curve against the compute axis (``compute/flops_seen`` or
``compute/images_seen``, logged every step, against the objective's periodic evaluations),
linearly interpolated at the largest budget every run of the study reached; the study's usual
statistics then compare those values.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import polars as pl

AXES = {"flops": "compute/flops_seen", "images": "compute/images_seen"}
History = Callable[[str, str], list[tuple[int, float]]]  # (run_id, metric) -> (step, value)


def at_budget(curve: Sequence[tuple[float, float]], budget: float) -> float:
    """The value of a (compute, value) curve at ``budget``, linearly interpolated between its
    points (NaN beyond its last point or before its first)."""
    points = sorted(curve)
    xs = [x for x, _ in points]
    if not points or budget > xs[-1] or budget < xs[0]:
        return math.nan
    i = bisect.bisect_left(xs, budget)
    if xs[i] == budget:
        return points[i][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (budget - x0) / (x1 - x0)


def _curve(history: History, run_id: str, metric: str, axis: str) -> list[tuple[float, float]]:
    """(compute at the step, objective at the step) at every step the objective was logged."""
    compute = {0: 0.0, **dict(history(run_id, axis))}  # nothing is spent before step 1
    return [(compute[step], value) for step, value in history(run_id, metric) if step in compute]


def matched(
    runs: pl.DataFrame, metric: str, axis: str, history: History
) -> tuple[pl.DataFrame, float]:
    """``runs`` with ``metric`` replaced by its value at the largest ``axis`` budget that every
    run reached (``flops`` or ``images``), and that budget."""
    column = AXES[axis]
    curves = {r: _curve(history, r, metric, column) for r in runs["run_id"].to_list()}
    reached = [max(x for x, _ in c) for c in curves.values() if c]
    if len(reached) < len(curves):
        missing = [r for r, c in curves.items() if not c]
        raise ValueError(f"runs {missing[:3]} logged no {metric} with {column}")
    budget = min(reached)
    values = [at_budget(curves[r], budget) for r in runs["run_id"].to_list()]
    column_values = pl.Series(metric, values, dtype=pl.Float64).fill_nan(None)  # not reached
    return runs.with_columns(column_values), budget


def matched_section(
    runs: pl.DataFrame, metric: str, baselines: dict[str, str], history: History
) -> list[str]:
    """Markdown: the pooled effects at matched FLOPs and at matched images seen."""
    from workbench.report.effects import study_effects
    from workbench.report.tables import to_markdown

    lines = [
        "## Effects at matched compute\n",
        f"Each run's `{metric}` read off its curve at the largest budget every run reached "
        "(linear between its evaluations), then the same pooled model as above.\n",
    ]
    for axis in AXES:
        try:
            values, budget = matched(runs, metric, axis, history)
        except ValueError as e:
            lines.append(f"At matched {axis}: not computed ({e}).\n")
            continue
        if values[metric].is_null().all():
            lines.append(f"At matched {axis}: not computed (`{metric}` has no evaluation at or "
                         "before that budget in some run; set eval.every to log it along the "
                         "way).\n")  # fmt: skip
            continue
        effects = study_effects(values, metric, baselines).filter(~pl.col("baseline"))
        table = effects.select("axis", "value", "pooled_diff", "pooled_ci95_low",
                               "pooled_ci95_high", "pooled_p_holm")  # fmt: skip
        lines += [f"At matched {axis} ({budget:.4g} per run):\n", to_markdown(table), ""]
    return lines
