"""The plots of a study report, as PNG files: the paired difference of each axis value to the
baseline with its interval, and the learning curves of each configuration."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import polars as pl

#: The training metric whose curves a report draws.
CURVE_METRIC = "loss/mmc4"


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported only when a report is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def effect_bars(effects: pl.DataFrame) -> list[tuple[str, float, float, float]]:
    """(``axis=value``, diff, low, high) of each comparison with the baseline that has paired
    seeds, in the order of ``effects`` (:func:`~workbench.report.effects.study_effects`)."""
    bars = []
    for row in effects.filter(~pl.col("baseline")).iter_rows(named=True):
        if row["diff"] is not None and not math.isnan(row["diff"]):
            label = f"{row['axis']}={row['value']}"
            bars.append((label, row["diff"], row["diff_ci95_low"], row["diff_ci95_high"]))
    return bars


def draw_effects(ax: Any, bars: list[tuple[str, float, float, float]], metric: str) -> None:
    """Each comparison's paired difference as a point with its 95% interval (none for one
    pair), one row each, the first at the top, against a line at 0 (no effect)."""
    ys = list(range(len(bars)))
    diffs = [diff for _, diff, _, _ in bars]
    # NaN bounds (one pair) draw no bar
    err = [[d - lo if lo == lo else 0.0 for _, d, lo, _ in bars],
           [hi - d if hi == hi else 0.0 for _, d, _, hi in bars]]  # fmt: skip
    ax.errorbar(diffs, ys, xerr=err, fmt="o", capsize=4)
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys, [label for label, _, _, _ in bars])
    ax.set_ylim(len(bars) - 0.5, -0.5)  # the first comparison at the top
    ax.set_xlabel(f"{metric}: variant - baseline (paired by seed, 95% CI)")
    if not bars:
        ax.text(0.5, 0.5, "no comparison with paired seeds", ha="center", transform=ax.transAxes)


def plot_effects(effects: pl.DataFrame, metric: str, path: Path) -> Path:
    """The paired difference to the baseline of each axis value, with its interval."""
    plt = _pyplot()
    bars = effect_bars(effects)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * max(len(bars), 1)))
    draw_effects(ax, bars, metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(
    uri: str, runs: pl.DataFrame, axes: list[str], path: Path, x_key: str | None = None
) -> Path:
    """The mean over seeds of :data:`CURVE_METRIC` per configuration, with its range, by step
    or (``x_key``, e.g. ``compute/flops_seen``) by what the runs had spent at each step."""
    from workbench.track import metric_history

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, group in runs.group_by(axes, maintain_order=True):
        label = ", ".join(f"{a.removeprefix('axis.')}={v}" for a, v in zip(axes, key, strict=True))
        curves: list[list[tuple[float, float]]] = []
        for run_id in group["run_id"]:
            curve: list[tuple[float, float]] = [
                (float(s), v) for s, v in metric_history(uri, run_id, CURVE_METRIC)
            ]
            if x_key is not None:
                spent = {float(s): v for s, v in metric_history(uri, run_id, x_key)}
                curve = [(spent[step], value) for step, value in curve if step in spent]
            if curve:
                curves.append(curve)
        if not curves:
            continue
        length = min(len(c) for c in curves)
        xs = [sum(c[i][0] for c in curves) / len(curves) for i in range(length)]
        columns = list(zip(*[[v for _, v in c[:length]] for c in curves], strict=True))
        ax.plot(xs, [sum(col) / len(col) for col in columns], label=label)
        ax.fill_between(xs, [min(col) for col in columns], [max(col) for col in columns],
                        alpha=0.2)  # fmt: skip
    ax.set_xlabel(x_key or "step")
    ax.set_ylabel(CURVE_METRIC)
    if ax.get_lines():
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, f"no run logged {x_key or CURVE_METRIC}", ha="center",
                transform=ax.transAxes)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def shot_series(runs: pl.DataFrame, task: str, axes: list[str]) -> pl.DataFrame:
    """Per configuration and shot count, the mean and Student-t 95% interval over seeds of
    ``eval/<task>/<k>shot`` (the last evaluation of each run): ``config``, ``shots``, ``mean``,
    ``ci95_low``, ``ci95_high``, ``seeds``."""
    from workbench.report.effects import mean_ci

    pattern = re.compile(rf"^eval/{re.escape(task)}/(\d+)shot$")
    columns = {int(m.group(1)): c for c in runs.columns if (m := pattern.match(c))}
    rows = []
    for key, group in runs.group_by(axes, maintain_order=True):
        label = ", ".join(f"{a.removeprefix('axis.')}={v}" for a, v in zip(axes, key, strict=True))
        for shots in sorted(columns):
            values = group[columns[shots]].drop_nulls().to_list()
            if values:
                mean, _, low, high = mean_ci(values)
                rows.append({"config": label, "shots": shots, "mean": mean, "ci95_low": low,
                             "ci95_high": high, "seeds": len(values)})  # fmt: skip
    return pl.DataFrame(rows)


def plot_shots(runs: pl.DataFrame, task: str, axes: list[str], path: Path) -> Path:
    """Each configuration's ``eval/<task>/<k>shot`` against k, with its 95% interval."""
    plt = _pyplot()
    series = shot_series(runs, task, axes)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label,), group in series.group_by("config", maintain_order=True) if series.height else []:
        mean, low, high = group["mean"].to_list(), group["ci95_low"], group["ci95_high"]
        err = [[m - lo if lo == lo else 0.0 for m, lo in zip(mean, low, strict=True)],
               [hi - m if hi == hi else 0.0 for m, hi in zip(mean, high, strict=True)]]  # fmt: skip
        ax.errorbar(group["shots"].to_list(), mean, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xlabel("in-context examples (shots)")
    ax.set_ylabel(f"eval/{task} (mean over seeds, 95% CI)")
    if series.height:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
