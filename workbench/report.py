"""Tables of finished runs: grouped by configuration, with the mean, standard deviation and 95%
confidence interval over seeds, and the paired difference to the baseline.

The baseline is the configuration whose runs carry no ``axis.*`` tag (the experiment as
written); a variant's difference is taken seed by seed against it (paired), so seed-to-seed
noise shared by both cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl
from scipy import stats

DEFAULT_METRICS = ("final/loss/laion", "final/loss/mmc4")


def runs_frame(uri: str, experiment: str) -> pl.DataFrame:
    """One row per finished run: ids, config_id, seed, ``axis.*`` tags and ``final/*`` metrics."""
    from workbench.track import search_runs

    rows: list[dict[str, Any]] = []
    for run in search_runs(uri, experiment):
        tags, metrics = run["tags"], run["metrics"]
        if "config_id" not in tags:
            continue  # not a workbench training run (e.g. a study's parent)
        row: dict[str, Any] = {
            "run_id": run["run_id"],
            "config_id": tags["config_id"],
            "seed": int(tags.get("seed", 0)),
        }
        row.update({k: v for k, v in tags.items() if k.startswith("axis.")})
        row.update({k: float(v) for k, v in metrics.items() if k.startswith("final/")})
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame()


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


def compare(
    frame: pl.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    group_by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per configuration (or per value of the ``group_by`` axes) and metric.

    Columns: the axes, ``metric``, ``n`` (seeds), ``mean``, ``std``, ``ci95_low``,
    ``ci95_high``, and against the baseline ``diff``, ``diff_ci95_low``, ``diff_ci95_high``,
    ``pairs`` (seeds present in both).
    """
    if frame.is_empty():
        return pl.DataFrame()
    axes = axis_columns(frame)
    if group_by:
        wanted = [a if a.startswith("axis.") else f"axis.{a}" for a in group_by]
        unknown = [a for a in wanted if a not in axes]
        if unknown:
            raise ValueError(f"no runs carry {unknown}; axes present: {axes or 'none'}")
        keys = wanted
    else:
        keys = ["config_id", *axes]
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        known = sorted(c for c in frame.columns if c.startswith("final/"))
        raise ValueError(f"no run has {missing}; metrics present: {known}")
    is_baseline = pl.all_horizontal([pl.col(a).is_null() for a in axes]) if axes else pl.lit(True)
    baseline = frame.filter(is_baseline)
    rows: list[dict[str, Any]] = []
    for group_key, group in frame.group_by(keys, maintain_order=True):
        label = dict(zip(keys, group_key, strict=True))
        for metric in metrics:
            values = group[metric].drop_nulls().to_list()
            mean, std, low, high = mean_ci(values)
            paired = group.select("seed", metric).join(
                baseline.select("seed", pl.col(metric).alias("base")), on="seed"
            )
            diffs = (paired[metric] - paired["base"]).drop_nulls().to_list()
            diff, _, diff_low, diff_high = mean_ci(diffs)
            rows.append(
                {
                    "variant": _variant(group, axes),
                    **label,
                    "metric": metric,
                    "n": len(values),
                    "mean": mean,
                    "std": std,
                    "ci95_low": low,
                    "ci95_high": high,
                    "diff": diff,
                    "diff_ci95_low": diff_low,
                    "diff_ci95_high": diff_high,
                    "pairs": len(diffs),
                }
            )
    order = [k for k in keys if k != "config_id"] + [k for k in keys if k == "config_id"]
    return pl.DataFrame(rows).sort([*order, "metric"], nulls_last=False)


def _variant(group: pl.DataFrame, axes: list[str]) -> str:
    """``baseline``, or the group's axis values (``xattn_every=2``; ``*`` where they differ)."""
    parts = []
    for axis in axes:
        values = group[axis].unique().to_list()
        if values == [None]:
            continue
        shown = str(values[0]) if len(values) == 1 else "*"
        parts.append(f"{axis.removeprefix('axis.')}={shown}")
    return ", ".join(parts) or "baseline"


def to_markdown(table: pl.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (empty cells for nulls and NaN)."""
    if table.is_empty():
        return "(no runs)"

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join(lines)
