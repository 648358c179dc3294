"""The per-item results behind a study's objective, read from each run's MLflow artifacts.

A run's evaluation writes one parquet file per task and shot count (``eval/<task>_<k>shot_
step<N>.parquet``) and one of its validation items (``eval/validation_step<N>.parquet``); the
objective's items are those of the run's last evaluation: the item's score (averaged over
demonstration trials) for ``eval/<task>/<k>shot``, the item's mean token loss for
``val/loss/<source>``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl


def run_items(frame: pl.DataFrame, metric: str) -> pl.DataFrame | None:
    """``item`` and ``value`` of ``metric`` from one run's items table; None for a metric
    without items (training losses, final metrics)."""
    if metric.startswith("val/loss/"):
        source = metric.removeprefix("val/loss/")
        rows = frame.filter(pl.col("source") == source)
        mean_loss = pl.col("loss_sum") / pl.col("tokens").clip(1)
        return rows.select(pl.col("key").alias("item"), mean_loss.alias("value"))
    if metric.startswith("eval/"):
        return (
            frame.group_by("id").agg(pl.col("score").mean().alias("value")).rename({"id": "item"})
        )
    return None


def prefix_of(metric: str) -> str | None:
    """The artifact file name prefix holding ``metric``'s items."""
    if metric.startswith("val/loss/"):
        return "validation"
    parts = metric.split("/")
    if metric.startswith("eval/") and len(parts) == 3:
        return f"{parts[1]}_{parts[2]}"
    return None


def study_items(uri: str, run_ids: list[str], metric: str) -> pl.DataFrame | None:
    """``run``, ``item``, ``value`` over the runs (None unless every run has the items)."""
    from workbench.track import latest_artifact

    prefix = prefix_of(metric)
    if prefix is None:
        return None
    frames = []
    with tempfile.TemporaryDirectory() as folder:
        for run_id in run_ids:
            local = latest_artifact(uri, run_id, "eval", f"{prefix}_step", Path(folder))
            if local is None:
                return None
            items = run_items(pl.read_parquet(local), metric)
            if items is None:
                return None
            frames.append(items.with_columns(pl.lit(run_id).alias("run")))
    return pl.concat(frames)


def weighted_quantile(values: list[int], counts: list[int], q: float) -> float:
    """The smallest value at or below which a share ``q`` of the (value, count) mass lies."""
    total = sum(counts)
    running = 0
    for value, count in sorted(zip(values, counts, strict=True)):
        running += count
        if running >= q * total:
            return float(value)
    return float("nan")


def stream_section(uri: str, runs: pl.DataFrame, axes: list[str]) -> list[str]:
    """Markdown: per configuration, the distributions of the MMC4 documents its runs trained on
    (text tokens and images per document: mean, 10th, 50th and 90th percentiles over every
    document of every seed), from each run's ``stream/stream_mmc4.parquet``."""
    from workbench.report.tables import to_markdown
    from workbench.track import latest_artifact

    tables = []
    with tempfile.TemporaryDirectory() as folder:
        for row in runs.iter_rows(named=True):
            local = latest_artifact(uri, row["run_id"], "stream", "stream_mmc4", Path(folder))
            if local is not None:
                tags = {a: row[a] for a in axes}
                tables.append(
                    pl.read_parquet(local).with_columns(**{a: pl.lit(v) for a, v in tags.items()})
                )
    if not tables:
        return []
    frame = pl.concat(tables).group_by([*axes, "kind", "value"]).agg(pl.col("count").sum())
    out: list[dict[str, object]] = []
    for (*cell, kind), group in frame.group_by([*axes, "kind"], maintain_order=True):
        values, counts = group["value"].to_list(), group["count"].to_list()
        mean = sum(v * c for v, c in zip(values, counts, strict=True)) / max(sum(counts), 1)
        out.append({**dict(zip(axes, cell, strict=True)), "per document": kind, "mean": mean,
                    **{f"p{int(q * 100)}": weighted_quantile(values, counts, q)
                       for q in (0.1, 0.5, 0.9)}})  # fmt: skip
    table = pl.DataFrame(out).sort([*axes, "per document"])
    return ["## The MMC4 training stream per configuration\n",
            "Text tokens and images of every MMC4 document the runs trained on (all seeds):\n",
            to_markdown(table), ""]  # fmt: skip
