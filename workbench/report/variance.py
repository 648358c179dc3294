"""The report's variance components and power table for a study's objective."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from workbench.report.effects import configurations
from workbench.report.pooled import PooledFit, fit, items_needed, power_table, with_items
from workbench.report.tables import to_markdown

EFFECT_SIZES = (0.01, 0.02, 0.05)


def study_fit(
    runs: pl.DataFrame, metric: str, baselines: Mapping[str, str],
    items: pl.DataFrame | None = None,
) -> PooledFit:  # fmt: skip
    """The configuration x seed fit of ``metric`` over a study's runs (``axis.*`` columns),
    with the item component when ``items`` (``run``, ``item``, ``value``) is given."""
    columns = {(a if a.startswith("axis.") else f"axis.{a}"): str(v) for a, v in baselines.items()}
    labelled, baseline = configurations(runs, columns)
    fitted = fit(labelled, metric, baseline)
    return with_items(fitted, items, "value") if items is not None else fitted


def variance_section(fitted: PooledFit, metric: str) -> list[str]:
    """Markdown: the residual variance, its item and seed parts, and the seeds each effect
    size needs at 80% power."""
    lines = [
        "## Variance components and power\n",
        f"The configuration x seed model of `{metric}` over {fitted.configs} configurations and "
        f"{fitted.seeds} seeds leaves a residual variance per run of {fitted.sigma2:.4g} on "
        f"{fitted.df} degrees of freedom (every pooled interval uses it).",
    ]
    if fitted.n_items:
        item_part = fitted.sigma2_item / fitted.n_items
        lines.append(
            f"Items ({fitted.n_items}, the same for every run) contribute sigma2_item / n_items = "
            f"{item_part:.4g} (sigma2_item = {fitted.sigma2_item:.4g} per item); seeds (run-to-"
            f"run noise on fixed items) {fitted.sigma2_seed:.4g}. More items shrink only the "
            "first part; more seeds shrink both."
        )
        needed = items_needed(fitted)
        if needed is not None:
            lines.append(
                f"Item noise is at most a fifth of seed noise from {needed} items on "
                f"(sigma2_item / (0.2 sigma2_seed)); this study used {fitted.n_items}."
            )
    lines += [
        "\nSeeds per configuration needed to detect each difference at 80% power (two-sided "
        "5%, the noncentral t distribution at this residual variance):\n",
        to_markdown(power_table(fitted, EFFECT_SIZES)),
        "",
    ]
    return lines


def interaction_section(
    runs: pl.DataFrame, metric: str, baselines: Mapping[str, str], fitted: PooledFit
) -> list[str]:
    """Markdown: for a grid over two or more axes, each two-axis interaction
    ``y(a, b) - y(a, b0) - y(a0, b) + y(a0, b0)`` (does the effect of one axis change with the
    other, e.g. the best cross-attention interval with scale?) with its pooled interval."""
    from itertools import combinations

    from workbench.report.pooled import contrast

    columns = {f"axis.{a}": str(v) for a, v in baselines.items()}
    if len(columns) < 2:
        return []

    def label(cell: dict[str, str]) -> str:
        return ",".join(f"{c.removeprefix('axis.')}={cell[c]}" for c in sorted(cell))

    rows = []
    for first, second in combinations(sorted(columns), 2):
        for a in sorted(set(runs[first].cast(pl.Utf8).to_list()) - {columns[first]}):
            for b in sorted(set(runs[second].cast(pl.Utf8).to_list()) - {columns[second]}):
                weights = {label({**columns, first: a, second: b}): 1.0,
                           label({**columns, first: a}): -1.0,
                           label({**columns, second: b}): -1.0}  # fmt: skip
                try:
                    estimate, low, high = contrast(fitted, weights)
                except ValueError:  # a cell that did not run (a one-at-a-time design)
                    continue
                pair = f"{first.removeprefix('axis.')} x {second.removeprefix('axis.')}"
                rows.append({"axes": pair, "values": f"{a} x {b}", "interaction": estimate,
                             "ci95_low": low, "ci95_high": high})  # fmt: skip
    if not rows:
        return []
    return ["## Interactions\n",
            f"Whether one axis's effect on `{metric}` changes with another: y(a, b) - y(a, b0) - "
            "y(a0, b) + y(a0, b0), with the pooled 95% interval (0: no interaction).\n",
            to_markdown(pl.DataFrame(rows)), ""]  # fmt: skip
