"""Running a study: worker processes that pop trials from the shared storage until the budget is
spent, and the study's MLflow parent run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.trial import TrialState

from workbench.search.objective import mirror_to_mlflow, objective_for
from workbench.search.storage import fail_dead_local_trials, open_study, storage_for
from workbench.search.study import Study, budget, load_studies, study_from_json, study_json


def work(
    study: Study,
    *,
    storage: str | None,
    home: Path,
    uri: str,
    parent_run_id: str,
) -> None:
    """One worker: runs trials until the study's budget is spent."""
    optuna_study = open_study(study, storage_for(storage, home))
    objective = objective_for(study, home, uri, parent_run_id)
    total = budget(study)
    while True:
        fail_dead_local_trials(optuna_study)
        trials = optuna_study.get_trials(deepcopy=False)
        started = [t for t in trials if t.state != TrialState.WAITING]
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        if len(started) >= total and not waiting:
            return
        if study.design != "tpe" and not waiting:
            return  # every cell taken
        optuna_study.optimize(
            objective, n_trials=1, catch=(Exception,), callbacks=[mirror_to_mlflow(uri)]
        )


def run_study(
    study: Study,
    *,
    storage: str | None = None,
    workers: int = 1,
    home: Path,
    tracking_uri: str | None = None,
    prepare: bool = False,
) -> optuna.Study:
    """Runs ``study`` with ``workers`` processes on this machine (more machines may join with
    the same storage) and returns it; ``prepare`` first builds the base experiment's inputs
    (its ``prepare``, e.g. the shapes world and backbones)."""
    from workbench import experiments
    from workbench.track import default_uri, study_parent_run

    if prepare:
        experiments.load(study.experiment).build_inputs(home)
    uri = tracking_uri or default_uri(home)
    optuna_study = open_study(study, storage_for(storage, home))
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        experiment = study.mlflow_experiment(home)
        parent = study_parent_run(uri, experiment, study.name, optuna_study._study_id, home)
        optuna_study.set_user_attr("mlflow_parent_run_id", parent)
    if workers <= 1:
        work(study, storage=storage, home=home, uri=uri, parent_run_id=parent)
    else:
        command = [*WORKER, study.name, "--home", str(home),
                   "--tracking-uri", uri, "--parent-run-id", parent,
                   "--study-json", study_json(study)]  # fmt: skip
        if storage:
            command += ["--storage", storage]
        processes = [subprocess.Popen(command) for _ in range(workers)]
        codes = [p.wait() for p in processes]
        if any(codes):
            raise RuntimeError(f"search workers exited with {codes}")
    return optuna.load_study(study_name=study.name, storage=storage_for(storage, home))


#: The command of a worker process (not ``-m workbench.search``: running a module as
#: ``__main__`` would import it twice, and the studies would register with the other copy).
WORKER = [sys.executable, "-c", "from workbench.search import worker_main; worker_main()"]


def worker_main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="workbench search worker")
    parser.add_argument("study")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--parent-run-id", required=True)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--study-json", default=None)
    args = parser.parse_args(argv)
    studies = load_studies()
    if args.study in studies or args.study_json is None:
        study = studies.get(args.study)
    else:  # a variant made on the command line (other seeds, budget or sampler)
        study = study_from_json(args.study_json)
    work(study, storage=args.storage, home=args.home, uri=args.tracking_uri,
         parent_run_id=args.parent_run_id)  # fmt: skip
