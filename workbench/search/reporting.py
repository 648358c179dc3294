"""``wb report``: a study's report from its Optuna study and MLflow runs, logged to the study's
MLflow parent run."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from workbench.search.storage import open_study, storage_for
from workbench.search.study import Study
from workbench.search.tables import importance, pareto_front, trials_table


def report_study(
    study: Study,
    home: Path,
    *,
    out: Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Path]:
    """Writes the report of ``study`` to ``out`` (default ``<home>/reports/<study>``) and logs
    it to the parent run (its artifacts under ``home``); the paths written, by kind."""
    from workbench.report import write_study_report
    from workbench.track import default_uri, log_artifacts

    uri = tracking_uri or default_uri(home)
    optuna_study = open_study(study, storage_for(storage, home))
    scores, method = importance(optuna_study)
    paths = write_study_report(
        uri, study.mlflow_experiment(home), study.name, study.objective,
        out or home / "reports" / study.name,
        trials=pl.DataFrame(trials_table(optuna_study)), importance=scores,
        importance_method=method, pareto=pl.DataFrame(pareto_front(optuna_study)),
    )  # fmt: skip
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if parent:
        log_artifacts(uri, parent, list(paths.values()), "report")
    return paths
