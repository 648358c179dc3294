"""Running a study: worker processes that pop trials from the shared storage until the budget is
spent, the study's MLflow parent run around them, and the live display of their progress."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import optuna
from optuna.trial import TrialState

from workbench.search.display import Quiet, watch
from workbench.search.objective import mirror_to_mlflow, objective_for
from workbench.search.parent import parent_run
from workbench.search.storage import (
    fail_dead_local_trials,
    open_study,
    record_settings,
    retry_failed_cells,
    storage_for,
)
from workbench.study import Study, budget, load_studies, study_from_json, study_json
from workbench.train.result import JobFailed


def work(
    study: Study,
    *,
    storage: str | None,
    home: Path,
    uri: str,
    parent_run_id: str,
    shown: Quiet | None = None,
) -> None:
    """One worker: runs trials until the study's budget is spent; ``shown`` is told of them."""
    optuna_study = open_study(study, storage_for(storage, home))
    objective = objective_for(study, home, uri, parent_run_id, shown)
    total = budget(study)
    while True:
        if shown is not None:
            shown.refresh(force=True)
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
    live: bool | None = None,
) -> optuna.Study:
    """Runs (or continues) ``study`` with ``workers`` processes on this machine (more machines
    may join with the same storage) and returns it; ``prepare`` first builds the base
    experiment's inputs (its ``prepare``, e.g. the shapes world and backbones). ``live`` shows
    its progress (default: when stdout is a terminal). Its seeds, budget and sampler are
    recorded (:func:`~workbench.search.storage.record_settings`: other seeds than those its
    trials ran with are refused); its MLflow parent run ends FINISHED, FAILED or KILLED."""
    from workbench import experiments
    from workbench.track import default_uri

    if prepare:
        experiments.load(study.experiment).build_inputs(home)
    uri = tracking_uri or default_uri(home)
    optuna_study = open_study(study, storage_for(storage, home))
    settings = record_settings(study, optuna_study)
    fail_dead_local_trials(optuna_study)
    close_failed_runs(uri, study, optuna_study)
    for cell in retry_failed_cells(study, optuna_study):
        print(f"{study.name}: running {cell} again (its last trial failed)", flush=True)
    with (
        parent_run(study, optuna_study, uri, home, settings) as parent,
        watch(optuna_study, budget(study), workers, live) as shown,
    ):
        if workers <= 1:
            work(study, storage=storage, home=home, uri=uri, parent_run_id=parent, shown=shown)
        else:
            try:
                _launch(study, workers, storage, home, uri, parent, shown)
            finally:  # a killed worker's trial ends FAIL and its MLflow run FAILED, now
                fail_dead_local_trials(optuna_study)
                close_failed_runs(uri, study, optuna_study)
    return optuna.load_study(study_name=study.name, storage=storage_for(storage, home))


def close_failed_runs(uri: str, study: Study, optuna_study: optuna.Study) -> None:
    """The MLflow runs of failed trials still RUNNING (their worker was killed) end FAILED."""
    from workbench.track import close_running_runs

    failed = optuna_study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    numbers = {str(t.number) for t in failed}
    if numbers:  # (the study's parent run is RUNNING too, with no trial tag)
        trial_of = lambda run: run.data.tags.get("trial")  # noqa: E731
        close_running_runs(uri, {"study": study.name}, lambda r: trial_of(r) in numbers)


def _launch(
    study: Study, workers: int, storage: str | None, home: Path, uri: str, parent: str,
    shown: Quiet,
) -> None:  # fmt: skip
    """``workers`` worker processes of ``study``, watched (their trials, from the storage)
    until they end; stopped when this process is interrupted. Under a live display their
    output goes to ``<home>/logs/search-<study>/worker-<i>.log``."""
    command = [*WORKER, study.name, "--home", str(home), "--tracking-uri", uri,
               "--parent-run-id", parent, "--study-json", study_json(study)]  # fmt: skip
    if storage:
        command += ["--storage", storage]
    logs = home / "logs" / f"search-{study.name}"
    with contextlib.ExitStack() as files:
        outputs: list[IO[str] | None] = [None] * workers
        if shown.owns_terminal:
            logs.mkdir(parents=True, exist_ok=True)
            outputs = [
                files.enter_context(open(logs / f"worker-{i}.log", "a")) for i in range(workers)
            ]
            shown.note(f"worker output: {logs}")
        merged = subprocess.STDOUT if shown.owns_terminal else None
        processes = [subprocess.Popen(command, stdout=out, stderr=merged) for out in outputs]
        try:
            while any(p.poll() is None for p in processes):
                shown.refresh()
                time.sleep(0.5)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                process.wait()
    codes = [p.returncode for p in processes]
    if any(codes):
        raise JobFailed(_workers_failed(study.name, codes, logs if shown.owns_terminal else None))


def _workers_failed(name: str, codes: list[int], logs: Path | None) -> str:
    """One line: which workers (1-based) stopped and how, where their output is, and that the
    others went on."""
    how = lambda c: f"killed by {signal.Signals(-c).name}" if c < 0 else f"exited with {c}"  # noqa: E731
    failed = [f"{i} ({how(c)})" for i, c in enumerate(codes, 1) if c]
    went_on = len(codes) - len(failed)
    return (
        f"search worker{'s' * (len(failed) > 1)} {', '.join(failed)} of {len(codes)} stopped"
        + (f"; their logs: {logs}" if logs else "")
        + (f"; the other {went_on} went on to the end" if went_on else "")
        + f"; the next `wb search {name}` runs the failed cells again"
    )


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
    if args.study_json is not None:  # what the launcher runs (its seeds, budget and sampler)
        study = study_from_json(args.study_json)
    else:
        study = load_studies().get(args.study)
    work(study, storage=args.storage, home=args.home, uri=args.tracking_uri,
         parent_run_id=args.parent_run_id)  # fmt: skip
