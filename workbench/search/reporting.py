"""``wb report``: a study's report from its Optuna study and MLflow runs, logged to the study's
MLflow parent run (the files as artifacts, the headline effects as metrics)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import polars as pl

from workbench.search.storage import storage_for
from workbench.search.tables import importance, pareto_front, trials_table
from workbench.spec import SpecError
from workbench.study import Study

if TYPE_CHECKING:
    from workbench.report.study import SearchTables


def _journal(storage: str | None, home: Path) -> Path | None:
    """The journal file :func:`storage_for` opens (and would create) for ``storage``; None for
    an RDB URL."""
    if storage is None or storage.endswith(".journal") or storage.startswith("journal:"):
        return Path(storage.removeprefix("journal:")) if storage else home / "optuna.journal"
    return None


def _ran(study: Study, storage: str | None, home: Path) -> tuple[optuna.Study, str]:
    """The Optuna study of ``study`` and its MLflow parent run, opened read-only: a study that
    has not run fails before anything (a journal, its queued trials) is written."""
    not_run = f"study {study.name!r} has no finished runs; run it first: wb search {study.name}"
    journal = _journal(storage, home)
    if journal is not None and not journal.is_file():
        raise SpecError(f"{not_run} (no Optuna journal {journal})")
    backend = storage_for(storage, home)
    if study.name not in optuna.study.get_all_study_names(backend):
        raise SpecError(f"{not_run} (not in its Optuna storage)")
    optuna_study = optuna.load_study(study_name=study.name, storage=backend)
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if not parent:
        raise SpecError(f"{not_run} (no MLflow parent run)")
    return optuna_study, str(parent)


def effect_metrics(effects: pl.DataFrame) -> dict[str, float]:
    """The headline effects as MLflow metrics of the parent run: per comparison
    ``effect/<axis>/<value>`` (the paired difference to the baseline) and its
    ``/ci95_low``, ``/ci95_high`` (MLflow names allow no ``=``)."""
    metrics: dict[str, float] = {}
    for row in effects.filter(~pl.col("baseline")).iter_rows(named=True):
        value = re.sub(r"[^\w.\- ]", "_", str(row["value"]))
        name = f"effect/{row['axis']}/{value}"
        for suffix, key in (("", "diff"), ("/ci95_low", "diff_ci95_low"),
                            ("/ci95_high", "diff_ci95_high")):  # fmt: skip
            if row[key] is not None and not math.isnan(row[key]):
                metrics[name + suffix] = float(row[key])
    return metrics


def report_study(
    study: Study,
    home: Path,
    *,
    out: Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Path]:
    """Writes the report of ``study``'s finished runs to ``out`` (default
    ``<home>/reports/<study>``) and logs it, with its headline effects, to the study's MLflow
    parent run; the paths written, by kind. A study without finished runs fails as a
    :class:`~workbench.spec.SpecError` having written nothing."""
    from workbench.report.effects import study_effects
    from workbench.report.items import stream_section, study_items
    from workbench.report.matched import matched_section
    from workbench.report.study import study_runs, write_study_report
    from workbench.report.variance import interaction_section, study_fit, variance_section
    from workbench.track import default_uri, log_artifacts, log_metrics_to, metric_history

    uri = tracking_uri or default_uri(home)
    optuna_study, parent = _ran(study, storage, home)
    experiment = study.mlflow_experiment(home)
    runs = study_runs(uri, experiment, parent)
    if runs.is_empty():
        raise SpecError(f"study {study.name!r} has no finished runs in experiment {experiment!r}")
    try:
        effects = study_effects(runs, study.objective, study.baseline())
    except ValueError as e:
        raise SpecError(f"study {study.name!r}: {e}") from None
    if effects.is_empty():
        known = sorted(c for c in runs.columns if c.startswith(("final/", "eval/")))
        raise SpecError(f"the runs of study {study.name!r} have no metric {study.objective!r}; "
                        f"metrics present: {known}")  # fmt: skip
    out = out or home / "reports" / study.name
    items = study_items(uri, runs["run_id"].to_list(), study.objective)
    try:
        fitted = study_fit(runs, study.objective, study.baseline(), items)
        variance = variance_section(fitted, study.objective)
        variance += interaction_section(runs, study.objective, study.baseline(), fitted)
    except ValueError as e:  # runs on different items, or no baseline run: say so
        variance = ["## Variance components and power\n", f"Not computed: {e}.\n"]
    variance += matched_section(runs, study.objective, study.baseline(),
                                lambda run, key: metric_history(uri, run, key))  # fmt: skip
    variance += stream_section(uri, runs, [f"axis.{a}" for a in study.axes])
    variance = _floors(study, home, runs, lambda run, key: metric_history(uri, run, key)) + variance
    paths = write_study_report(
        uri, study.name, study.objective, runs, effects, out, _search(optuna_study), variance
    )
    log_artifacts(uri, parent, list(paths.values()), "report")
    metrics = effect_metrics(effects)
    if metrics:
        log_metrics_to(uri, parent, metrics, step=0)
    return paths


def _floors(
    study: Study, home: Path, runs: pl.DataFrame, history: Callable[[str, str], list[Any]]
) -> list[str]:
    """What the baseline's ``eval/<task>/<k>shot`` objective must beat: the majority answer of
    each question's answer set on the same items, and the untrained model (the runs'
    evaluation at step 0, where they have one)."""
    parts = study.objective.split("/")
    if len(parts) != 3 or parts[0] != "eval" or not parts[2].endswith("shot"):
        return []
    from workbench.eval.scoring import majority_baseline
    from workbench.eval.tasks import load_task

    spec = study.base_spec(home)
    try:
        floor = majority_baseline(load_task(parts[1], Path(spec.eval.data)), spec.eval.subset)
    except (OSError, ValueError, KeyError):
        return []
    at_base = pl.all_horizontal([pl.col(f"axis.{a}").cast(pl.Utf8) == str(v)
                                 for a, v in study.baseline().items()])  # fmt: skip
    base = runs.filter(at_base).drop_nulls(study.objective)
    if base.is_empty():
        return []
    starts = [v for run in base["run_id"] for step, v in history(run, study.objective) if step == 0]
    untrained = (
        f"{sum(starts) / len(starts):.3f} for the untrained model (step 0)"
        if starts
        else "the untrained model was not evaluated here (`eval.at_start` off)"
    )
    mean = float(base[study.objective].mean())  # type: ignore[arg-type]
    return [
        "## What the baseline must beat\n",
        f"The baseline's `{study.objective}` is {mean:.3f} (mean of {base.height} runs) against "
        f"{floor:.3f} for always giving the most frequent answer of each question's answer set "
        f"on the same {spec.eval.subset} items, and {untrained}.\n",
    ]


def _search(optuna_study: optuna.Study) -> SearchTables:
    """What the search knows of ``optuna_study``: its trials, importances, Pareto front."""
    from workbench.report.study import SearchTables

    scores, method = importance(optuna_study)
    return SearchTables(
        trials=pl.DataFrame(trials_table(optuna_study)),
        importance=scores,
        importance_method=method,
        pareto=pl.DataFrame(pareto_front(optuna_study)),
    )
