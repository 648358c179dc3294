"""The plots of a study report, as PNG files: the effect of each axis value with its interval,
and the learning curves of each configuration."""

from __future__ import annotations

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


def plot_effects(effects: pl.DataFrame, axes: list[str], metric: str, path: Path) -> Path:
    """One panel per axis: the mean of ``metric`` per value, with its 95% interval over seeds."""
    plt = _pyplot()
    panels = max(len(axes), 1)
    fig, axs = plt.subplots(1, panels, figsize=(4 * panels, 3.2), squeeze=False)
    for ax, axis in zip(axs[0], axes, strict=False):
        part = effects.filter(pl.col("axis") == axis.removeprefix("axis."))
        xs = list(range(part.height))
        means = part["mean"].to_list()
        lows, highs = part["ci95_low"].to_list(), part["ci95_high"].to_list()
        # NaN bounds (one seed) draw no bar
        err = [[m - lo if lo == lo else 0 for m, lo in zip(means, lows, strict=True)],
               [hi - m if hi == hi else 0 for m, hi in zip(means, highs, strict=True)]]  # fmt: skip
        ax.errorbar(xs, means, yerr=err, fmt="o", capsize=4)
        ax.set_xticks(xs, [str(v) for v in part["value"].to_list()])
        ax.set_title(axis.removeprefix("axis."))
        ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(uri: str, runs: pl.DataFrame, axes: list[str], path: Path) -> Path:
    """The mean over seeds of :data:`CURVE_METRIC` by step per configuration, with its range."""
    from workbench.track import metric_history

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, group in runs.group_by(axes, maintain_order=True):
        label = ", ".join(f"{a.removeprefix('axis.')}={v}" for a, v in zip(axes, key, strict=True))
        curves = [metric_history(uri, run_id, CURVE_METRIC) for run_id in group["run_id"]]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        steps = [s for s, _ in curves[0][:length]]
        columns = list(zip(*[[v for _, v in c[:length]] for c in curves], strict=True))
        ax.plot(steps, [sum(col) / len(col) for col in columns], label=label)
        ax.fill_between(steps, [min(col) for col in columns], [max(col) for col in columns],
                        alpha=0.2)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(CURVE_METRIC)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
