"""Tables of finished runs: one row per run, and grouped by configuration with the mean,
standard deviation and 95% confidence interval over seeds and the paired difference to the
baseline; rendered as markdown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from workbench.report.effects import axis_columns, mean_ci

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
        if "study" in tags:
            row["study"], row["trial"] = tags["study"], int(tags.get("trial", -1))
        # final summaries, and the last value of each evaluation
        row.update({k: float(v) for k, v in metrics.items() if k.startswith(("final/", "eval/"))})
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def _group_keys(
    frame: pl.DataFrame, metrics: Sequence[str], group_by: Sequence[str] | None
) -> list[str]:
    """The columns ``compare`` groups by; unknown axes or metrics fail naming the known ones."""
    axes = axis_columns(frame)
    missing = [m for m in metrics if m not in frame.columns]
    if group_by:
        wanted = [a if a.startswith("axis.") else f"axis.{a}" for a in group_by]
        unknown = [a for a in wanted if a not in axes]
        if unknown:
            raise ValueError(f"no runs carry {unknown}; axes present: {axes or 'none'}")
    if missing:
        known = sorted(c for c in frame.columns if c.startswith("final/"))
        raise ValueError(f"no run has {missing}; metrics present: {known}")
    return wanted if group_by else ["config_id", *axes]


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
    keys = _group_keys(frame, metrics, group_by)
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
            rows.append({"variant": _variant(group, axes), **label, "metric": metric,
                         "n": len(values), "mean": mean, "std": std, "ci95_low": low,
                         "ci95_high": high, "diff": diff, "diff_ci95_low": diff_low,
                         "diff_ci95_high": diff_high, "pairs": len(diffs)})  # fmt: skip
    order = [k for k in keys if k != "config_id"] + [k for k in keys if k == "config_id"]
    return pl.DataFrame(rows).sort([*order, "metric"], nulls_last=False)


def compare_experiment(
    uri: str,
    experiment: str,
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """:func:`compare` of the finished runs of ``experiment`` (``wb compare``); no runs, an
    unknown axis or metric fail as a :class:`~workbench.spec.SpecError` naming what exists."""
    from workbench.spec import SpecError
    from workbench.track import experiment_names

    frame = runs_frame(uri, experiment)
    if frame.is_empty():
        known = experiment_names(uri)
        raise SpecError(
            f"no finished runs in experiment {experiment!r} at {uri}; experiments there: "
            f"{', '.join(known) or 'none'}"
        )
    try:
        return compare(frame, metrics or DEFAULT_METRICS, group_by)
    except ValueError as e:
        raise SpecError(str(e)) from None


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
