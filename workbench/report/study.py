"""The report of a study: effects per axis with intervals and paired tests, learning curves,
cost, the reruns that would narrow the uncertainty most, and the search's own tables; written
as markdown and a self-contained HTML page with PNG plots."""

from __future__ import annotations

import base64
from pathlib import Path

import polars as pl

from workbench.report.effects import axis_columns, study_effects
from workbench.report.html import to_html
from workbench.report.plots import CURVE_METRIC, plot_effects, plot_learning_curves
from workbench.report.tables import runs_frame, to_markdown


def _study_runs(
    uri: str, experiment: str, study: str, metric: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the study's finished runs, their effects on ``metric``); fails when there are none."""
    frame = runs_frame(uri, experiment)
    if frame.is_empty() or "study" not in frame.columns:
        raise ValueError(f"no finished runs of study {study!r} in experiment {experiment!r}")
    runs = frame.filter(pl.col("study") == study)
    effects = study_effects(runs, metric, study)
    if effects.is_empty():
        raise ValueError(f"the runs of study {study!r} have no metric {metric!r}")
    return runs, effects


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
        .select("axis", "value", "n", "diff", "diff_ci_width")
        .head(5)
    )


def _sections(study: str, metric: str, runs: pl.DataFrame, effects: pl.DataFrame) -> list[str]:
    """The markdown of the effects, curves, cost and reruns (the plots by file name)."""
    return [
        f"# Study `{study}`\n",
        f"Objective: `{metric}` over {runs.height} finished runs "
        f"({runs['seed'].n_unique()} seeds per configuration, paired by seed).\n",
        "## Effects per axis\n",
        "Mean and Student-t 95% interval over seeds; `diff` is the paired difference to the "
        "baseline value of the axis (others at baseline), `p_holm` its paired t-test p-value "
        "with Holm's correction over all comparisons.\n",
        to_markdown(effects),
        "\n![effects](effects.png)\n",
        f"## Learning curves\n\nMean over seeds of `{CURVE_METRIC}` by step, band = min to max.\n",
        "![learning curves](learning_curves.png)\n",
        "## Cost per configuration\n",
        to_markdown(_cost(runs, axis_columns(runs))),
        "\n## Reruns that would narrow the uncertainty most\n",
        "Comparisons with the widest interval on their difference first (more seeds there halve "
        "the width with four times the runs):\n",
        to_markdown(_reruns(effects)),
    ]


def _search_sections(
    trials: pl.DataFrame | None,
    importance: dict[str, float] | None,
    importance_method: str,
    pareto: pl.DataFrame | None,
) -> list[str]:
    """The markdown of what the search itself knows: importances, Pareto front, trials."""
    sections: list[str] = []
    if importance:
        sections += [
            f"\n## Parameter importance ({importance_method})\n",
            "A screening signal from the completed trials, not an effect estimate:\n",
            "\n".join(f"- {k}: {v:.3f}" for k, v in importance.items()),
        ]
    if pareto is not None and not pareto.is_empty():
        sections += ["\n## Pareto front (objective vs measured seconds)\n", to_markdown(pareto)]
    if trials is not None and not trials.is_empty():
        sections += ["\n## Trials\n", to_markdown(trials)]
    return sections


def write_study_report(
    uri: str,
    experiment: str,
    study: str,
    metric: str,
    out_dir: str | Path,
    trials: pl.DataFrame | None = None,
    importance: dict[str, float] | None = None,
    importance_method: str = "",
    pareto: pl.DataFrame | None = None,
) -> dict[str, Path]:
    """Markdown and self-contained HTML reports (with PNG plots) of a study's finished runs.

    Returns the paths written: ``report.md``, ``report.html`` and the plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs, effects = _study_runs(uri, experiment, study, metric)
    axes = axis_columns(runs)
    plots = {
        "effects": plot_effects(effects, axes, metric, out / "effects.png"),
        "curves": plot_learning_curves(uri, runs, axes, out / "learning_curves.png"),
    }
    sections = _sections(study, metric, runs, effects)
    sections += _search_sections(trials, importance, importance_method, pareto)
    markdown = "\n".join(sections) + "\n"
    paths = {"markdown": out / "report.md", "html": out / "report.html", **plots}
    paths["markdown"].write_text(markdown)
    images = {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots.values()}
    paths["html"].write_text(to_html(markdown, images))
    return paths
