"""A study's MLflow parent run while ``wb search`` runs it: created on the first search, re-opened
RUNNING by every one that continues the study, tagged with the settings it runs with, and ended
with the study's summary metrics, FINISHED (FAILED on an exception, KILLED on Ctrl-C)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from workbench.study import Study


@contextlib.contextmanager
def parent_run(
    study: Study, optuna_study: optuna.Study, uri: str, home: Path, settings: Mapping[str, Any]
) -> Iterator[str]:
    """The id of ``study``'s parent run, RUNNING inside the ``with`` block and ended when it
    ends; both ids are stored on both sides (``mlflow_parent_run_id``, ``optuna.study_id``)."""
    from workbench import track

    experiment = study.mlflow_experiment(home)
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        parent = track.study_parent_run(uri, experiment, study.name, optuna_study._study_id, home)
        optuna_study.set_user_attr("mlflow_parent_run_id", parent)
    # a Tracker of an existing run re-opens it (RUNNING) and ends it with a status
    run = track.Tracker(uri, experiment, run_name=f"study-{study.name}", params={},
                        tags=settings_tags(settings), home=home, run_id=parent)  # fmt: skip
    started, status = time.monotonic(), "FAILED"
    try:
        yield str(parent)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            metrics, finished = summary(optuna_study, time.monotonic() - started)
            run.log_metrics(metrics, step=finished)
        finally:
            run.finish(status)


def settings_tags(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings a search runs with as parent-run tags: ``study.seeds`` = ``0,1``, ..."""
    tags = {}
    for key, value in settings.items():
        if value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            tags[f"study.{key}"] = text
    return tags


def summary(optuna_study: optuna.Study, wall_s: float) -> tuple[dict[str, float], int]:
    """The study's summary metrics and its number of finished trials (their step): trials
    complete, failed and pruned, the best objective value, the seconds of every trial's runs
    (the study's compute), and ``wall_s`` of this search."""
    trials = optuna_study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    metrics = {
        "trials_complete": float(counts[TrialState.COMPLETE]),
        "trials_failed": float(counts[TrialState.FAIL]),
        "trials_pruned": float(counts[TrialState.PRUNED]),
        "seconds": float(sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials)),
        "wall_s": wall_s,
    }
    values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
    if values:
        maximize = optuna_study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        metrics["best_value"] = float(max(values) if maximize else min(values))
    finished = counts[TrialState.COMPLETE] + counts[TrialState.FAIL] + counts[TrialState.PRUNED]
    return metrics, finished
