"""Opening a study's Optuna study: its storage, sampler and pruner, its enqueued cells, its
objectives' names, the settings it runs with, and the trials of dead workers.

A study is continued under its name: ``wb search X --trials 20`` after ``wb search X`` extends
its budget, ``--sampler tpe`` searches beyond its grid, and the latest budget and sampler are
recorded. Its seeds are fixed once a trial has started (the trials' means must be over the same
seeds to be compared): continuing with other seeds, the definition's default included, stops
with an error that names the recorded ones.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from workbench.spec import SpecError
from workbench.study import Study, budget


def storage_for(url: str | None, home: Path) -> Any:
    """A journal file beside the MLflow database by default; an RDB URL (PostgreSQL) or a
    ``*.journal`` path otherwise."""
    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")) if url else home / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return RDBStorage(url, heartbeat_interval=15, grace_period=45)


def _sampler(study: Study) -> optuna.samplers.BaseSampler:
    if study.design == "tpe":
        return optuna.samplers.TPESampler(seed=0)
    # grid cells are enqueued; the sampler only fills parameters for trials beyond them
    return optuna.samplers.RandomSampler(seed=0)


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    if study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _check_pruning(study: Study) -> None:
    if study.pruner == "none":
        return
    if not study.objective.startswith("eval/"):
        raise SpecError(f"study {study.name}: pruning needs an eval/... objective")
    if study.nproc_per_node > 1:
        raise SpecError(f"study {study.name}: pruning works on single-process trials only")
    if study.compute_objective:
        raise SpecError(f"study {study.name}: Optuna cannot prune multi-objective studies")


def open_study(study: Study, storage: Any) -> optuna.Study:
    """The Optuna study of ``study`` in ``storage`` (created, with its cells enqueued, once)."""
    _check_pruning(study)
    directions = [study.direction] + (["minimize"] if study.compute_objective else [])
    optuna_study = optuna.create_study(
        study_name=study.name,
        storage=storage,
        directions=directions,
        sampler=_sampler(study),
        pruner=_pruner(study),
        load_if_exists=True,
    )
    if not optuna_study.user_attrs.get("enqueued"):
        # a grid runs its cells; TPE starts from the baseline
        cells = study.cells() if study.design != "tpe" else [study.baseline()]
        for cell in cells:
            optuna_study.enqueue_trial(cell, skip_if_exists=True)
        optuna_study.set_user_attr("enqueued", True)
    names = metric_names(study)
    if optuna_study.metric_names != names:  # what optuna-dashboard labels the objectives with
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna_study.set_metric_names(names)
    return optuna_study


def metric_names(study: Study) -> list[str]:
    """The names of the objectives: the metric, and ``seconds`` for a compute objective."""
    return [study.objective] + (["seconds"] if study.compute_objective else [])


def settings(study: Study) -> dict[str, Any]:
    """What a run of ``study`` records on its Optuna study (user attributes) and MLflow parent
    run (``study.<key>`` tags): seeds, trial budget, sampler, objective."""
    return {"seeds": list(study.seeds), "trials": study.trials, "budget": budget(study),
            "design": study.design, "objective": study.objective,
            "direction": study.direction}  # fmt: skip


def record_settings(study: Study, optuna_study: optuna.Study) -> dict[str, Any]:
    """Records :func:`settings` of ``study`` on ``optuna_study`` and returns them; raises
    :class:`SpecError` when a trial has started with other seeds."""
    recorded = optuna_study.user_attrs.get("seeds")
    started = any(t.state != TrialState.WAITING for t in optuna_study.get_trials(deepcopy=False))
    if recorded is not None and list(recorded) != list(study.seeds) and started:
        seeds = ",".join(map(str, recorded))
        raise SpecError(
            f"study {study.name!r} ran with seeds {seeds}; continue it with --seeds {seeds} "
            "(its trials are compared over the same seeds)"
        )
    values = settings(study)
    for key, value in values.items():
        if optuna_study.user_attrs.get(key) != value:
            optuna_study.set_user_attr(key, value)
    return values


def fail_dead_local_trials(optuna_study: optuna.Study) -> None:
    """RUNNING trials whose worker process on this machine is gone end FAIL."""
    from workbench.track import process_gone

    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if process_gone(trial.user_attrs.get("host"), trial.user_attrs.get("pid")):
            optuna_study._storage.set_trial_user_attr(trial._trial_id, "failure", "worker died")
            optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _cell(trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """A trial's axis values (those it was enqueued with, while it waits)."""
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    return {k: str(v) for k, v in params.items()}


def retry_failed_cells(study: Study, optuna_study: optuna.Study) -> list[dict[str, str]]:
    """Enqueues again each cell of a grid or one-at-a-time ``study`` whose every trial failed
    (an error, or a worker killed mid-trial), while it has failed at most ``study.retries``
    times; returns those cells. Called by the launcher before its workers start, so no two
    processes enqueue one cell."""
    if study.design == "tpe":
        return []
    trials = optuna_study.get_trials(deepcopy=False)
    again = []
    for cell in study.cells():
        tried = [t for t in trials if _cell(t) == cell]
        if not tried or any(t.state != TrialState.FAIL for t in tried):
            continue  # not begun, or done, running, waiting or pruned
        if len(tried) <= study.retries:
            optuna_study.enqueue_trial(cell, skip_if_exists=False)
            again.append(cell)
    return again
