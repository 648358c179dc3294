"""Reports of finished runs: tables grouped by configuration, with the mean, standard deviation
and 95% confidence interval over seeds, and the paired difference to the baseline; the report of
a study with its plots.

Runs are compared only within one base configuration (``base_config_id``: the experiment with
its overrides, without axis values). Its baseline is the runs whose every axis is at the axis's
declared baseline (untagged, or tagged with that value); a variant's difference is taken seed by
seed against it (paired), so seed-to-seed noise shared by both cancels.

``tables`` (runs and configurations, markdown, rich), ``effects`` (intervals, paired tests, Holm),
``plots`` (PNG), ``html`` (the self-contained page), ``study`` (the study report writer).
"""

from workbench.report.effects import axis_columns, holm, mean_ci, study_effects
from workbench.report.study import write_study_report
from workbench.report.tables import (
    COMPARE_COLUMNS,
    DEFAULT_METRICS,
    axis_baselines,
    compare,
    compare_experiment,
    render_comparison,
    runs_frame,
    to_markdown,
)

__all__ = [
    "COMPARE_COLUMNS",
    "DEFAULT_METRICS",
    "axis_baselines",
    "axis_columns",
    "compare",
    "compare_experiment",
    "holm",
    "mean_ci",
    "render_comparison",
    "runs_frame",
    "study_effects",
    "to_markdown",
    "write_study_report",
]
