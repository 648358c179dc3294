"""Opening a study's Optuna study: its storage, sampler and pruner, its enqueued cells, and the
trials of dead workers."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from workbench.search.study import Study
from workbench.spec import SpecError


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
    return optuna_study


def fail_dead_local_trials(optuna_study: optuna.Study) -> None:
    """RUNNING trials whose worker process on this machine is gone end FAIL."""
    host = socket.gethostname()
    for trial in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != host or "pid" not in attrs:
            continue
        try:
            os.kill(int(attrs["pid"]), 0)
        except ProcessLookupError:
            optuna_study._storage.set_trial_user_attr(trial._trial_id, "failure", "worker died")
            optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except PermissionError:
            continue
