"""Reports of finished runs: tables grouped by configuration, with the mean, standard deviation
and 95% confidence interval over seeds, and the paired difference to the baseline; the report of
a study with its plots.

The baseline is the configuration whose runs carry no ``axis.*`` tag (the experiment as
written); a variant's difference is taken seed by seed against it (paired), so seed-to-seed
noise shared by both cancels.

``tables`` (runs and configurations, markdown), ``effects`` (intervals, paired tests, Holm),
``plots`` (PNG), ``html`` (the self-contained page), ``study`` (the study report writer).
"""

from workbench.report.effects import axis_columns, holm, mean_ci, study_effects
from workbench.report.study import write_study_report
from workbench.report.tables import (
    DEFAULT_METRICS,
    compare,
    compare_experiment,
    runs_frame,
    to_markdown,
)

__all__ = [
    "DEFAULT_METRICS",
    "axis_columns",
    "compare",
    "compare_experiment",
    "holm",
    "mean_ci",
    "runs_frame",
    "study_effects",
    "to_markdown",
    "write_study_report",
]
