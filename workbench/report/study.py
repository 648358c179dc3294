"""The report of a study: effects per axis with intervals and paired tests, learning curves,
cost, the reruns that would narrow the uncertainty most, and the search's own tables; written
as markdown and a self-contained HTML page with PNG plots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from workbench.report.effects import axis_columns
from workbench.report.html import to_html
from workbench.report.plots import CURVE_METRIC, plot_effects, plot_learning_curves, plot_shots
from workbench.report.tables import runs_frame, to_markdown


def study_runs(uri: str, experiment: str, parent_run_id: str) -> pl.DataFrame:
    """The finished runs of a study: the children of its MLflow parent run, whatever else
    ``experiment`` holds (a quickstart's runs, other studies), without the ``axis.*`` columns
    that only those other runs carry."""
    frame = runs_frame(uri, experiment)  # finished runs only
    if frame.is_empty():
        return frame
    runs = frame.filter(pl.col("parent_run_id") == parent_run_id)
    foreign = [c for c in axis_columns(runs) if runs[c].null_count() == runs.height]
    return runs.drop(foreign)


def _cost(runs: pl.DataFrame, axes: list[str]) -> pl.DataFrame:
    if "final/wall_s" not in runs.columns:
        return pl.DataFrame()
    return runs.group_by(axes, maintain_order=True).agg(
        pl.len().alias("runs"), pl.col("final/wall_s").mean().alias("seconds_per_run")
    )


def _reruns(effects: pl.DataFrame) -> pl.DataFrame:
    """The comparisons with the widest interval on their difference first."""
    return (
        effects.filter(~pl.col("baseline"))
        .with_columns((pl.col("diff_ci95_high") - pl.col("diff_ci95_low")).alias("diff_ci_width"))
        .sort("diff_ci_width", descending=True, nulls_last=False)
        .select("axis", "value", "pairs", "diff", "diff_ci_width")
        .head(5)
    )


def _axes(effects: pl.DataFrame) -> list[str]:
    """The ``axis.*`` columns of the study's axes, in the order of ``effects``."""
    return [f"axis.{a}" for a in effects["axis"].unique(maintain_order=True).to_list()]


def _sections(
    study: str, metric: str, runs: pl.DataFrame, effects: pl.DataFrame,
    variance: list[str] | None = None,
) -> list[str]:  # fmt: skip
    """The markdown of the effects, variance and power, curves, cost and reruns (the plots by
    file name)."""
    variance = variance or []
    base = effects.filter(pl.col("baseline"))
    baseline = ", ".join(f"{a}={v}" for a, v in zip(base["axis"], base["value"], strict=True))
    return [
        f"# Study `{study}`\n",
        f"Objective: `{metric}` over {runs.height} finished runs "
        f"({runs['seed'].n_unique()} seeds, paired by seed). "
        f"Baseline (as the axes declare it): `{baseline}`.\n",
        "## Effects per axis\n",
        "Mean and Student-t 95% interval over seeds of each axis value with the other axes at "
        "their baseline. The headline is `pooled_diff` (variant - baseline) with its 95% "
        "interval from the configuration x seed model of the whole study (the pooled residual "
        "variance, `pooled_df` degrees of freedom) and `pooled_p_holm` (Holm's correction over "
        "all comparisons). Beside it, per pair: `diff` over the `pairs` seeds both ran, its "
        "paired-t interval and `p_holm`.\n",
        to_markdown(effects),
        "\n![effects](effects.png)\n",
        *variance,
        f"## Learning curves\n\nMean over seeds of `{CURVE_METRIC}` by step, band = min to max; "
        "then against the training FLOPs and the images the runs had seen (a cheaper or sparser "
        "configuration is compared at equal cost there).\n",
        "![learning curves](learning_curves.png)\n",
        "![by FLOPs](curves_flops.png) ![by images seen](curves_images.png)\n",
        *_shots_section(metric),
        "## Cost per configuration\n",
        to_markdown(_cost(runs, _axes(effects))),
        "\n## Reruns that would narrow the uncertainty most\n",
        "Comparisons with the widest interval on their difference first (more seeds there halve "
        "the width with four times the runs):\n",
        to_markdown(_reruns(effects)),
    ]


def _shots_section(metric: str) -> list[str]:
    if not (metric.startswith("eval/") and metric.count("/") == 2):
        return []
    task = metric.split("/")[1]
    text = (f"## By shots\n\n`eval/{task}` of each configuration against the number of "
            "in-context examples (mean over seeds, Student-t 95% interval): where trainable and "
            "frozen special embeddings part with more shots.\n")  # fmt: skip
    return [text, "![by shots](shots.png)\n"]


@dataclass(frozen=True)
class SearchTables:
    """What the search itself knows of a study, beside its runs.

    Attributes:
        trials: one row per Optuna trial (``workbench.search.trials_table``).
        importance: parameter -> importance over the completed trials.
        importance_method: the evaluator that gave ``importance``.
        pareto: the non-dominated trials of a (quality, seconds) study.
    """

    trials: pl.DataFrame | None = None
    importance: Mapping[str, float] = field(default_factory=dict)
    importance_method: str = ""
    pareto: pl.DataFrame | None = None


def _search_sections(search: SearchTables) -> list[str]:
    """The markdown of what the search itself knows: importances, Pareto front, trials."""
    sections: list[str] = []
    if search.importance:
        sections += [
            f"\n## Parameter importance ({search.importance_method})\n",
            "A screening signal from the completed trials, not an effect estimate:\n",
            "\n".join(f"- {k}: {v:.3f}" for k, v in search.importance.items()),
        ]
    if search.pareto is not None and not search.pareto.is_empty():
        sections += ["\n## Pareto front (objective vs measured seconds)\n",
                     to_markdown(search.pareto)]  # fmt: skip
    if search.trials is not None and not search.trials.is_empty():
        sections += ["\n## Trials\n", to_markdown(search.trials)]
    return sections


def write_study_report(
    uri: str,
    study: str,
    metric: str,
    runs: pl.DataFrame,
    effects: pl.DataFrame,
    out_dir: str | Path,
    search: SearchTables | None = None,
    variance: list[str] | None = None,
) -> dict[str, Path]:
    """Markdown and self-contained HTML reports (with PNG plots) of a study's finished runs.

    Args:
        uri: the MLflow tracking URI (the learning curves are read from it).
        study: the study's name.
        metric: the objective ``effects`` compares.
        runs: the study's finished runs (:func:`study_runs`).
        effects: their :func:`~workbench.report.effects.study_effects` on ``metric``.
        out_dir: the folder written (created).
        search: the Optuna side: trials, importances, Pareto front.
        variance: the variance components and power section (:mod:`workbench.report.variance`).

    Returns:
        The paths written by kind: ``markdown``, ``html`` and the plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    axes = _axes(effects)
    plots = {
        "effects": plot_effects(effects, metric, out / "effects.png"),
        "curves": plot_learning_curves(uri, runs, axes, out / "learning_curves.png"),
        "curves_flops": plot_learning_curves(uri, runs, axes, out / "curves_flops.png",
                                             "compute/flops_seen"),
        "curves_images": plot_learning_curves(uri, runs, axes, out / "curves_images.png",
                                              "compute/images_seen"),
    }  # fmt: skip
    if metric.startswith("eval/") and metric.count("/") == 2:
        task = metric.split("/")[1]
        plots["shots"] = plot_shots(runs, task, axes, out / "shots.png")
    sections = _sections(study, metric, runs, effects, variance)
    sections += _search_sections(search or SearchTables())
    markdown = "\n".join(sections) + "\n"
    paths = {"markdown": out / "report.md", "html": out / "report.html", **plots}
    paths["markdown"].write_text(markdown)
    paths["html"].write_text(to_html(markdown, {p.name: p.read_bytes() for p in plots.values()}))
    return paths
