"""Tables of finished runs: one row per run, and each variant against the baseline of its base
configuration (mean, standard deviation and 95% interval over seeds, the difference to the
baseline paired by seed); rendered as markdown or as a rich table.

A *base configuration* is what the variants of one ablation share: the experiment with its
``--set`` overrides, without axis values (the ``base_config_id`` tag; a run without it is a base
configuration of its own). Runs of different base configurations are never compared. Within one,
the baseline is the runs whose every axis is at its declared baseline (untagged, or tagged with
the baseline value).
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from workbench.report.effects import axis_columns, mean_ci

DEFAULT_METRICS = ("final/loss/laion", "final/loss/mmc4")
COMPARE_COLUMNS = ("n", "mean", "std", "ci95_low", "ci95_high", "diff", "diff_ci95_low",
                   "diff_ci95_high", "pairs", "note")  # fmt: skip


def runs_frame(uri: str, experiment: str, finished_only: bool = True) -> pl.DataFrame:
    """One row per workbench training run: ``run_id``, ``status``, ``config_id``,
    ``base_config_id`` and ``parent_run_id`` (null when absent), ``seed``, ``axis.*`` tags,
    ``study`` and ``trial`` (study runs), ``final/*`` metrics and the last ``eval/*``, ``val/*``
    and ``compute/*`` values."""
    from workbench.track import search_runs

    rows: list[dict[str, Any]] = []
    for run in search_runs(uri, experiment, finished_only):
        tags, metrics = run["tags"], run["metrics"]
        if "config_id" not in tags:
            continue  # not a workbench training run (e.g. a study's parent)
        row: dict[str, Any] = {
            "run_id": run["run_id"],
            "status": run["status"],
            "config_id": tags["config_id"],
            "base_config_id": tags.get("base_config_id"),
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "seed": int(tags.get("seed", 0)),
        }
        row.update({k: v for k, v in tags.items() if k.startswith("axis.")})
        if "study" in tags:
            row["study"], row["trial"] = tags["study"], int(tags.get("trial", -1))
        row.update({k: float(v) for k, v in metrics.items()
                    if k.startswith(("final/", "eval/", "val/", "compute/"))})  # fmt: skip
        rows.append(row)
    if not rows:
        return pl.DataFrame()
    frame = pl.from_dicts(rows, infer_schema_length=None)  # every row's keys, not the first 100
    return frame.with_columns(pl.col("base_config_id", "parent_run_id").cast(pl.String))


def axis_baselines(axes: Sequence[str]) -> dict[str, str]:
    """``axis.<name>`` -> the declared baseline value, for the columns of registered axes."""
    from workbench.axes import load_ablations

    registered = load_ablations()
    names = {a: a.removeprefix("axis.") for a in axes}
    return {a: registered.get(n).baseline for a, n in names.items() if n in registered.names()}


def compare(
    frame: pl.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    group_by: Sequence[str] | None = None,
    baselines: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Each variant of each base configuration against that configuration's baseline.

    Rows are configurations (``config_id``) or, with ``group_by``, values of those axes among
    the runs whose other axes are at baseline; either way only within one ``base_config_id``.
    An axis column is null where the axis is at its baseline (``baselines``: ``axis.<name>`` ->
    value, by default the declared ones). Values are averaged per seed first, so ``n`` counts
    seeds; ``diff`` is the mean of the per-seed differences to the baseline (``pairs`` seeds in
    both), with its Student-t interval; ``note`` says why an interval is missing.

    Columns: ``variant``, ``base_config_id``, ``config_id`` (without ``group_by``), the axes,
    ``metric``, then :data:`COMPARE_COLUMNS`.
    """
    if "status" in frame.columns:
        frame = frame.filter(pl.col("status").is_null() | (pl.col("status") == "FINISHED"))
    if frame.is_empty():
        return pl.DataFrame()
    axes = axis_columns(frame)
    wanted = _check(frame, metrics, group_by, axes)
    runs = _at_baseline_as_null(
        frame, axes, axis_baselines(axes) if baselines is None else baselines
    )
    rows: list[dict[str, Any]] = []
    for _, family in runs.group_by("base_config_id", maintain_order=True):
        rows += _compare_within(family, metrics, axes, wanted)
    order = {m: i for i, m in enumerate(metrics)}
    table = pl.from_dicts(rows, infer_schema_length=None)
    table = table.with_columns(
        (pl.col("variant") != "baseline").alias("_variant"),  # the baseline first
        pl.col("metric").replace_strict(order).alias("_metric"),
    )
    keys = ["base_config_id", "_variant", "variant", *([] if wanted else ["config_id"]), "_metric"]
    return table.sort(keys).drop("_variant", "_metric")


def _check(
    frame: pl.DataFrame, metrics: Sequence[str], group_by: Sequence[str] | None, axes: list[str]
) -> list[str]:
    """The ``axis.*`` columns of ``group_by``; unknown axes or metrics fail naming the known."""
    wanted = [a if a.startswith("axis.") else f"axis.{a}" for a in group_by or []]
    unknown = [a for a in wanted if a not in axes]
    if unknown:
        raise ValueError(f"no runs carry {unknown}; axes present: {axes or 'none'}")
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        known = sorted(c for c in frame.columns if c.startswith(("final/", "eval/")))
        raise ValueError(f"no run has {missing}; metrics present: {known}")
    return wanted


def _at_baseline_as_null(
    frame: pl.DataFrame, axes: list[str], baselines: Mapping[str, str]
) -> pl.DataFrame:
    """Axis values at their baseline become null; a run without ``base_config_id`` gets its
    ``config_id`` (it is a base configuration of its own)."""
    base = pl.col("base_config_id") if "base_config_id" in frame.columns else pl.lit(None)
    return frame.with_columns(
        pl.coalesce(base.cast(pl.String), pl.col("config_id")).alias("base_config_id"),
        *[
            pl.when(pl.col(a).cast(pl.String) == baselines.get(a))
            .then(None)
            .otherwise(pl.col(a).cast(pl.String))
            .alias(a)
            for a in axes
        ],
    )


def _compare_within(
    family: pl.DataFrame, metrics: Sequence[str], axes: list[str], wanted: list[str]
) -> list[dict[str, Any]]:
    """The rows of one base configuration's runs (``family``)."""
    if wanted:  # one axis at a time: the others at their baseline
        others = [pl.col(a).is_null() for a in axes if a not in wanted]
        family = family.filter(pl.all_horizontal(others)) if others else family
    keys = wanted or ["config_id", *axes]
    at_baseline = pl.all_horizontal([pl.col(a).is_null() for a in axes]) if axes else pl.lit(True)
    baseline = family.filter(at_baseline)
    rows: list[dict[str, Any]] = []
    for key, group in family.group_by(keys, maintain_order=True):
        label = dict(zip(keys, key, strict=True))
        shown = [f"{k.removeprefix('axis.')}={v}" for k, v in label.items() if k in axes and v]
        is_baseline = not shown
        for metric in metrics:
            rows.append({"variant": ", ".join(shown) or "baseline",
                         "base_config_id": family["base_config_id"][0], **label, "metric": metric,
                         **_against(group, baseline, metric, is_baseline)})  # fmt: skip
    return rows


def _against(
    group: pl.DataFrame, baseline: pl.DataFrame, metric: str, is_baseline: bool
) -> dict[str, Any]:
    """Mean and interval over ``group``'s seeds; the difference to ``baseline`` paired by seed."""

    def per_seed(runs: pl.DataFrame, name: str) -> pl.DataFrame:
        return runs.group_by("seed").agg(pl.col(metric).mean().alias(name)).drop_nulls()

    values = per_seed(group, "value")
    paired = values.join(per_seed(baseline, "base"), on="seed")
    diffs = (paired["value"] - paired["base"]).to_list()
    mean, std, low, high = mean_ci(values["value"].to_list())
    diff, _, diff_low, diff_high = mean_ci(diffs)
    return {"n": values.height, "mean": mean, "std": std, "ci95_low": low, "ci95_high": high,
            "diff": diff, "diff_ci95_low": diff_low, "diff_ci95_high": diff_high,
            "pairs": len(diffs),
            "note": _note(values.height, len(diffs), baseline.height, is_baseline)}  # fmt: skip


def _note(n: int, pairs: int, baseline_runs: int, is_baseline: bool) -> str:
    """Why a row has no interval ('' when it has one)."""
    if n == 0:
        return "no values of this metric"
    if is_baseline:
        return "1 seed: run more seeds for an interval" if n == 1 else ""
    if baseline_runs == 0:
        return "no baseline runs in this base configuration"
    if pairs == 0:
        return "no seed in common with the baseline"
    return "1 pair: run more seeds for an interval" if pairs == 1 else ""


def compare_experiment(
    uri: str,
    experiment: str,
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    study: str | None = None,
) -> pl.DataFrame:
    """:func:`compare` of the finished runs of ``experiment`` (of one ``study`` if given;
    ``wb compare``); no runs, an unknown axis or metric fail as a
    :class:`~workbench.spec.SpecError` naming what exists."""
    from workbench.spec import SpecError
    from workbench.track import experiment_ids

    frame = runs_frame(uri, experiment)
    if frame.is_empty():
        known = list(experiment_ids(uri))
        raise SpecError(
            f"no finished runs in experiment {experiment!r} at {uri}; experiments there: "
            f"{', '.join(known) or 'none'}"
        )
    if study is not None:
        studies = sorted(frame["study"].drop_nulls().unique()) if "study" in frame.columns else []
        if study not in studies:
            raise SpecError(f"no finished runs of study {study!r} in experiment {experiment!r}; "
                            f"studies there: {', '.join(studies) or 'none'}")  # fmt: skip
        frame = frame.filter(pl.col("study") == study)
    try:
        return compare(frame, metrics or DEFAULT_METRICS, group_by)
    except ValueError as e:
        raise SpecError(str(e)) from None


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


def render_comparison(
    table: pl.DataFrame, counts: bool = True, digits: int = 3, width: int | None = None
) -> str:
    """:func:`compare`'s table as rich tables, one per base configuration, at most ``width``
    (default: the terminal's, up to 100) columns wide: variant, metric, n (``counts``), mean,
    the difference to the baseline with its 95% interval, and the pairs or a note (its advice
    once, below the table)."""
    from rich.console import Console

    if table.is_empty():
        return "(no runs)"
    width = width or min(100, shutil.get_terminal_size((100, 24)).columns)
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    for i, ((base,), family) in enumerate(table.group_by("base_config_id", maintain_order=True)):
        console.print(
            *[""] * (i > 0), _rich_table(family, f"base configuration {base}", counts, digits)
        )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def _rich_table(family: pl.DataFrame, title: str, counts: bool, digits: int) -> Any:
    from rich import box
    from rich.table import Table

    def number(x: float | None, sign: str = "") -> str:
        return "" if x is None or math.isnan(x) else f"{x:{sign}.{digits}f}"

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False,
                  caption_justify="left")  # fmt: skip
    for name in ["variant", "metric", *(["n"] if counts else []), "mean"]:
        table.add_column(
            name, justify="right" if name in ("n", "mean") else "left", overflow="fold"
        )
    table.add_column("diff to baseline [95% CI]", no_wrap=True)
    table.add_column("pairs/note")
    previous, advice = None, set()
    for row in family.iter_rows(named=True):
        is_baseline = row["variant"] == "baseline"
        interval = f"[{number(row['diff_ci95_low'], '+')}, {number(row['diff_ci95_high'], '+')}]"
        diff = number(row["diff"], "+") + (f" {interval}" if number(row["diff_ci95_low"]) else "")
        short, _, why = row["note"].partition(": ")  # "1 pair: run more seeds for an interval"
        advice |= {why} - {""}
        note = (f"{short} *" if why else short) or ("" if is_baseline else f"{row['pairs']} pairs")
        if (row["variant"], row.get("config_id")) != previous and previous is not None:
            table.add_section()
        first = (row["variant"], row.get("config_id")) != previous
        previous = (row["variant"], row.get("config_id"))
        cells = [row["variant"] if first else "", row["metric"], *([str(row["n"])] * counts)]
        table.add_row(*cells, number(row["mean"]), "" if is_baseline else diff, note)
    table.caption = "* " + "; ".join(sorted(advice)) if advice else None
    return table
