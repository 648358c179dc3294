"""Effect statistics: the mean and Student-t interval over seeds, Holm's correction, and the
per-axis effects of a study, paired by seed against the study's declared baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from scipy import stats

from workbench.report.pooled import fit, holm


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


def paired_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``diffs`` is 0; NaN when
    untestable (fewer than two pairs, or no spread among them)."""
    mean, std, _, _ = mean_ci(diffs)
    if len(diffs) < 2 or not std > 0:
        return math.nan
    t = mean / (std / math.sqrt(len(diffs)))
    return float(2 * stats.t.sf(abs(t), len(diffs) - 1))


def _per_seed(runs: pl.DataFrame, metric: str) -> pl.DataFrame:
    """``seed`` and the mean of ``metric`` over the runs of that seed (a cell a TPE search
    sampled twice has two runs per seed: they are one observation, not two)."""
    return (
        runs.group_by("seed")
        .agg(pl.col(metric).drop_nulls().mean())
        .drop_nulls(metric)
        .sort("seed")
    )


def _effect_row(group: pl.DataFrame, base: pl.DataFrame, metric: str) -> dict[str, Any]:
    """Mean and CI of ``metric`` over ``group``'s seeds; its paired difference to ``base``
    (columns ``seed``, ``base``) on the seeds both have, with the paired t-test's p-value."""
    mean, std, low, high = mean_ci(group[metric].to_list())
    paired = group.join(base, on="seed")
    diffs = (paired[metric] - paired["base"]).to_list()
    diff, _, diff_low, diff_high = mean_ci(diffs)
    return {"n": group.height, "mean": mean, "std": std, "ci95_low": low, "ci95_high": high,
            "pairs": len(diffs), "diff": diff, "diff_ci95_low": diff_low,
            "diff_ci95_high": diff_high, "p": paired_p(diffs)}  # fmt: skip


def study_effects(runs: pl.DataFrame, metric: str, baselines: Mapping[str, str]) -> pl.DataFrame:
    """Per axis value, the other axes at their baseline: the mean and CI of ``metric`` over
    seeds, and the paired difference to the baseline configuration with a paired t-test,
    Holm-adjusted over every comparison of the study.

    Args:
        runs: the study's runs, one row each: ``seed``, ``metric`` and ``axis.<name>`` per axis.
        metric: the column compared.
        baselines: axis name (or its ``axis.<name>`` column) -> its declared baseline value
            (``Study.baseline()``); never inferred from the runs (the most frequent value of
            an unbalanced study is not its baseline).

    Returns:
        One row per (axis, value), the baseline value first: ``axis``, ``value``, ``baseline``,
        ``n`` (seeds), ``mean``, ``std``, ``ci95_low``, ``ci95_high``, ``pairs`` (seeds shared
        with the baseline), ``diff`` (variant - baseline), ``diff_ci95_low``,
        ``diff_ci95_high``, ``p``, ``p_holm``; empty when no run has ``metric``.
    """
    if runs.is_empty() or metric not in runs.columns:
        return pl.DataFrame()
    columns = {(a if a.startswith("axis.") else f"axis.{a}"): str(v) for a, v in baselines.items()}
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs carry no {missing} tags; axes present: {axis_columns(runs)}")
    at_base = {c: pl.col(c).cast(pl.Utf8) == v for c, v in columns.items()}
    base_runs = runs.filter(pl.all_horizontal(list(at_base.values())))
    base = _per_seed(base_runs, metric).rename({metric: "base"})
    rows: list[dict[str, Any]] = []
    for column, baseline in columns.items():
        others = [test for c, test in at_base.items() if c != column]
        varied = runs.filter(pl.all_horizontal(others)) if others else runs
        present = {str(v) for v in varied[column].drop_nulls().to_list()} - {baseline}
        for value in [baseline, *sorted(present)]:
            group = _per_seed(varied.filter(pl.col(column).cast(pl.Utf8) == value), metric)
            rows.append({"axis": column.removeprefix("axis."), "value": value,
                         "baseline": value == baseline,
                         **_effect_row(group, base, metric)})  # fmt: skip
    tested = [i for i, r in enumerate(rows) if not math.isnan(r["p"])]
    adjusted = holm([rows[i]["p"] for i in tested])
    p_holm = [math.nan] * len(rows)
    for i, adjusted_p in zip(tested, adjusted, strict=True):
        p_holm[i] = adjusted_p
    frame = pl.DataFrame(rows).with_columns(pl.Series("p_holm", p_holm))
    return _with_pooled(frame, runs, metric, columns)


def configurations(runs: pl.DataFrame, columns: Mapping[str, str]) -> tuple[pl.DataFrame, str]:
    """``runs`` with a ``config`` column (every axis value, ``axis=value`` joined by commas),
    and the baseline configuration's label."""
    names = sorted(columns)
    label = pl.concat_str([pl.lit(f"{c.removeprefix('axis.')}=") + pl.col(c).cast(pl.Utf8)
                           for c in names], separator=",")  # fmt: skip
    baseline = ",".join(f"{c.removeprefix('axis.')}={columns[c]}" for c in names)
    return runs.with_columns(label.alias("config")), baseline


def _with_pooled(
    frame: pl.DataFrame, runs: pl.DataFrame, metric: str, columns: Mapping[str, str]
) -> pl.DataFrame:
    """Adds the whole-study fit's ``pooled_diff``, ``pooled_ci95_low``/``high``, ``pooled_df``
    and ``pooled_p_holm`` to each comparison row (:mod:`workbench.report.pooled`)."""
    labelled, baseline = configurations(runs, columns)
    pooled = {"pooled_diff": [], "pooled_ci95_low": [], "pooled_ci95_high": [],
              "pooled_df": [], "pooled_p_holm": []}  # type: dict[str, list[Any]]  # fmt: skip
    try:
        fitted = fit(labelled, metric, baseline).effects
        by_config = (
            {row["config"]: row for row in fitted.iter_rows(named=True)} if fitted.height else {}
        )
    except ValueError:  # no baseline run with the metric: nothing to pool against
        by_config = {}
    for row in frame.iter_rows(named=True):
        cell = {**columns, f"axis.{row['axis']}": row["value"]}
        label = ",".join(f"{c.removeprefix('axis.')}={cell[c]}" for c in sorted(columns))
        found = by_config.get(label) if not row["baseline"] else None
        for key, source in (("pooled_diff", "diff"), ("pooled_ci95_low", "ci95_low"),
                            ("pooled_ci95_high", "ci95_high"), ("pooled_df", "df"),
                            ("pooled_p_holm", "p_holm")):  # fmt: skip
            pooled[key].append(found[source] if found else None)
    return frame.with_columns(
        *(pl.Series(k, v, dtype=pl.Int64 if k == "pooled_df" else pl.Float64)
          for k, v in pooled.items())
    )  # fmt: skip
