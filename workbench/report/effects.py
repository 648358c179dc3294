"""Effect statistics: the mean and Student-t interval over seeds, Holm's correction, and the
per-axis effects of a study (paired by seed against the baseline)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl
from scipy import stats


def axis_columns(frame: pl.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith("axis."))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student-t interval of the mean; NaN bounds for one value."""
    n = len(values)
    if n == 0:
        return (math.nan,) * 4
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over the comparisons)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    m = len(p_values)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _effect_row(group: pl.DataFrame, base: pl.DataFrame, metric: str) -> dict[str, Any]:
    """Mean and CI of ``metric`` over ``group``'s seeds; its paired difference to ``base``
    (columns ``seed``, ``base``) with the paired t-test's p-value (NaN when untestable)."""
    mean, std, low, high = mean_ci(group[metric].drop_nulls().to_list())
    paired = group.select("seed", metric).join(base, on="seed")
    diffs = (paired[metric] - paired["base"]).to_list()
    diff, _, diff_low, diff_high = mean_ci(diffs)
    p = math.nan
    if len(diffs) > 1 and any(d != 0 for d in diffs):
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return {"n": group.height, "mean": mean, "std": std, "ci95_low": low, "ci95_high": high,
            "diff": diff, "diff_ci95_low": diff_low, "diff_ci95_high": diff_high,
            "p": p}  # fmt: skip


def study_effects(frame: pl.DataFrame, metric: str, study: str) -> pl.DataFrame:
    """Per axis value: mean and CI over seeds, and the paired difference to the baseline with
    a paired t-test, Holm-adjusted over every comparison of the study."""
    runs = frame.filter(pl.col("study") == study) if "study" in frame.columns else frame
    axes = axis_columns(runs)
    if runs.is_empty() or metric not in runs.columns:
        return pl.DataFrame()
    baseline_values = {
        a: runs[a].drop_nulls().mode().to_list()[0] for a in axes if runs[a].drop_nulls().len()
    }
    is_base = pl.all_horizontal([pl.col(a) == baseline_values[a] for a in baseline_values])
    base = runs.filter(is_base).select("seed", pl.col(metric).alias("base"))
    rows: list[dict[str, Any]] = []
    for axis in axes:
        others = [pl.col(a) == baseline_values[a] for a in axes if a != axis]
        varied = runs.filter(pl.all_horizontal(others)) if others else runs
        for value in sorted(varied[axis].drop_nulls().unique().to_list()):
            group = varied.filter(pl.col(axis) == value)
            rows.append({"axis": axis.removeprefix("axis."), "value": value,
                         "baseline": value == baseline_values[axis],
                         **_effect_row(group, base, metric)})  # fmt: skip
    table = pl.DataFrame(rows)
    tested = [i for i, r in enumerate(rows) if not math.isnan(r["p"])]
    adjusted = holm([rows[i]["p"] for i in tested])
    p_holm = [math.nan] * len(rows)
    for i, value in zip(tested, adjusted, strict=True):
        p_holm[i] = value
    return table.with_columns(pl.Series("p_holm", p_holm))
