"""The report's variance components and power table for a study's objective."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from workbench.report.effects import configurations
from workbench.report.pooled import PooledFit, fit, power_table, with_items
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
    lines += [
        "\nSeeds per configuration needed to detect each difference at 80% power (two-sided "
        "5%, the noncentral t distribution at this residual variance):\n",
        to_markdown(power_table(fitted, EFFECT_SIZES)),
        "",
    ]
    return lines
