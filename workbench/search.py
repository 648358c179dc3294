"""Optuna studies of ablation axes: the only module that imports optuna.

A :class:`Study` (defined in ``ablations/studies.py``) names a base experiment, the axes it
searches, the objective, the seeds every configuration runs with, and a budget. ``run_study``
turns it into an Optuna study in a storage shared by every worker (a journal file beside the
MLflow database by default, or an RDB URL such as PostgreSQL) and one MLflow parent run, with a
child run per (trial, seed).

- Grids are enqueued cell by cell (the baseline first); workers pop waiting trials from the
  storage atomically, so parallel workers never run a cell twice.
- Continuous or mixed spaces use TPE.
- A trial whose worker died is marked FAIL, not lost: on RDB storage by Optuna's heartbeat, on
  a journal file by the next worker, which finds the RUNNING trial's process gone.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from workbench.registry import Registry
from workbench.spec import SpecError

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Study:
    """A question: a base experiment, the axes searched, the objective, seeds and budget.

    Attributes:
        axes: axis name -> the values searched (categorical), or (low, high) floats for a
            continuous search over the axis's open values.
        objective: the metric of each run (``final/...`` or ``eval/...``), averaged over seeds.
        overrides: spec changes for every run of the study (e.g. a shorter ``train.steps``).
        design: ``grid`` (every combination), or ``one_at_a_time`` (the baseline and each
            axis's values with the others at baseline: the effect of each axis alone).
    """

    name: str
    experiment: str
    axes: Mapping[str, tuple[Any, ...]]
    objective: str = "final/loss/mmc4"
    direction: Literal["minimize", "maximize"] = "minimize"
    seeds: tuple[int, ...] = (0, 1)
    trials: int | None = None  # default: every grid cell
    design: Literal["grid", "one_at_a_time", "tpe"] = "grid"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    pruner: Literal["none", "median", "hyperband"] = "none"  # on ``eval/...`` objectives
    nproc_per_node: int = 1  # >1: each trial's run is one torchrun job (ddp/fsdp strategy)
    compute_objective: bool = False  # also minimise the measured seconds of the trial's runs
    doc: str = ""

    def __post_init__(self) -> None:
        STUDIES.add(self.name, self)

    def base_spec(self, home: Path) -> Any:
        """The base experiment's spec with the study's overrides."""
        from workbench import experiments

        loaded = experiments.load(self.experiment)
        return loaded.spec(home=home).override(dict(self.overrides))

    def mlflow_experiment(self, home: Path) -> str:
        """The MLflow experiment its runs log to (the base spec's name)."""
        return str(self.base_spec(home).name)

    def baseline(self) -> dict[str, str]:
        from workbench.axes import AXES, load_ablations

        load_ablations()
        return {name: AXES.get(name).baseline for name in self.axes}

    def cells(self) -> list[dict[str, str]]:
        """The configurations a grid or one-at-a-time design runs, the baseline first."""
        base = self.baseline()
        categorical = {k: [str(v) for v in vs] for k, vs in self.axes.items()}
        if self.design == "one_at_a_time":
            cells = [base]
            for name, values in categorical.items():
                cells += [{**base, name: v} for v in values if v != base[name]]
        else:
            names = list(categorical)
            cells = [dict(zip(names, combo, strict=True))
                     for combo in itertools.product(*categorical.values())]  # fmt: skip
            cells.sort(key=lambda c: c != base)
        unique: list[dict[str, str]] = []
        for cell in cells:
            if cell not in unique:
                unique.append(cell)
        return unique


STUDIES: Registry[Study] = Registry("study")


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


def _fail_dead_local_trials(optuna_study: optuna.Study) -> None:
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


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    if study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(study: Study, storage: Any) -> optuna.Study:
    if study.pruner != "none" and not study.objective.startswith("eval/"):
        raise SpecError(f"study {study.name}: pruning needs an eval/... objective")
    if study.pruner != "none" and study.nproc_per_node > 1:
        raise SpecError(f"study {study.name}: pruning works on single-process trials only")
    if study.pruner != "none" and study.compute_objective:
        raise SpecError(f"study {study.name}: Optuna cannot prune multi-objective studies")
    directions = [study.direction] + (["minimize"] if study.compute_objective else [])
    optuna_study = optuna.create_study(
        study_name=study.name,
        storage=storage,
        directions=directions,
        sampler=_sampler(study),
        pruner=_pruner(study),
        load_if_exists=True,
    )
    if study.design != "tpe" and not optuna_study.user_attrs.get("enqueued"):
        for cell in study.cells():
            optuna_study.enqueue_trial(cell, skip_if_exists=True)
        optuna_study.set_user_attr("enqueued", True)
    elif study.design == "tpe" and not optuna_study.user_attrs.get("enqueued"):
        optuna_study.enqueue_trial(study.baseline(), skip_if_exists=True)
        optuna_study.set_user_attr("enqueued", True)
    return optuna_study


def budget(study: Study) -> int:
    return study.trials or len(study.cells())


def _suggest(trial: optuna.Trial, study: Study) -> dict[str, str]:
    choices = {}
    for name, values in study.axes.items():
        if study.design == "tpe" and len(values) == 2 and all(isinstance(v, float) for v in values):
            choices[name] = str(trial.suggest_float(name, values[0], values[1]))
        else:
            choices[name] = trial.suggest_categorical(name, [str(v) for v in values])
    return choices


def objective_for(study: Study, home: Path, uri: str, parent_run_id: str):
    from workbench.axes import apply_all
    from workbench.train.loop import Stopped, run, train

    base = study.base_spec(home)

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        choices = _suggest(trial, study)
        spec = apply_all(base, choices)
        values: list[float] = []
        seconds = 0.0
        for index, seed in enumerate(study.seeds):

            def report(step: int, metrics: dict[str, float], offset: int = index) -> None:
                if study.pruner == "none" or study.objective not in metrics:
                    return
                trial.report(metrics[study.objective], offset * spec.train.steps + step)
                if trial.should_prune():
                    raise Stopped(f"pruned by the {study.pruner} pruner at step {step}")

            tags = {
                "mlflow.parentRunId": parent_run_id,
                "study": study.name,
                "trial": trial.number,
                **{f"axis.{k}": v for k, v in choices.items()},
            }
            seeded = spec.override({"train.seed": seed})
            try:
                if study.nproc_per_node > 1:  # this worker asks and tells; the job's ranks train
                    launched = run(
                        seeded, nproc_per_node=study.nproc_per_node, home=home,
                        tracking_uri=uri, tags=tags, resume=True, show_progress=False,
                    )  # fmt: skip
                    assert launched is not None  # rank 0 is on this machine
                    result = launched
                else:
                    result = train(seeded, home=home, tracking_uri=uri, tags=tags, resume=True,
                                   show_progress=False, on_eval=report)  # fmt: skip
            except Stopped as stop:
                trial.set_user_attr(f"run_id/seed{seed}", stop.run_id)
                raise optuna.TrialPruned(str(stop)) from None
            seconds += float(result.final.get("final/wall_s", 0.0))
            key = study.objective
            metric = result.final.get(key, result.history[-1].get(key) if result.history else None)
            if metric is None:
                raise SpecError(f"the runs have no metric {key!r}")
            values.append(float(metric))
            trial.set_user_attr(f"run_id/seed{seed}", result.run_id)
        trial.set_user_attr("seconds", seconds)
        mean = sum(values) / len(values)
        return (mean, seconds) if study.compute_objective else mean

    return objective


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
        _fail_dead_local_trials(optuna_study)
        trials = optuna_study.get_trials(deepcopy=False)
        started = [t for t in trials if t.state != TrialState.WAITING]
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        if len(started) >= total and not waiting:
            return
        if study.design != "tpe" and not waiting:
            return  # every cell taken
        optuna_study.optimize(
            objective, n_trials=1, catch=(Exception,), callbacks=[_mirror_to_mlflow(uri)]
        )


def _mirror_to_mlflow(uri: str):
    """After each trial: its state, value and intermediate values onto its MLflow runs."""
    from workbench.track import log_metrics_to, set_run_tags

    def mirror(optuna_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tags = {"trial_state": trial.state.name, "optuna.trial_number": trial.number}
        if trial.values:
            tags["trial_value"] = trial.values[0]
        for key, run_id in trial.user_attrs.items():
            if key.startswith("run_id/") and run_id:
                set_run_tags(uri, run_id, tags)
                for step, value in trial.intermediate_values.items():
                    log_metrics_to(uri, run_id, {"trial/intermediate": value}, int(step))

    return mirror


def run_study(
    study: Study,
    *,
    storage: str | None = None,
    workers: int = 1,
    home: Path,
    tracking_uri: str | None = None,
) -> optuna.Study:
    """Runs ``study`` with ``workers`` processes on this machine (more machines may join with
    the same storage) and returns it."""
    from workbench.track import default_uri, study_parent_run

    uri = tracking_uri or default_uri(home)
    optuna_study = open_study(study, storage_for(storage, home))
    parent = optuna_study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        experiment = study.mlflow_experiment(home)
        parent = study_parent_run(uri, experiment, study.name, optuna_study._study_id)
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


def study_json(study: Study) -> str:
    data = {f.name: getattr(study, f.name) for f in dataclasses.fields(study)}
    data["axes"] = {k: list(v) for k, v in study.axes.items()}
    data["overrides"] = dict(study.overrides)
    data["seeds"] = list(study.seeds)
    return json.dumps(data)


def pareto_front(optuna_study: optuna.Study) -> list[dict[str, Any]]:
    """The non-dominated trials of a multi-objective (quality, seconds) study."""
    if len(optuna_study.directions) < 2:
        return []
    return [{"number": t.number, **t.params, "objective": t.values[0], "seconds": t.values[1]}
            for t in optuna_study.best_trials]  # fmt: skip


def trials_table(optuna_study: optuna.Study) -> list[dict[str, Any]]:
    return [
        {"number": t.number, "state": t.state.name,
         "value": t.values[0] if t.values else None, **t.params,
         **{k: v for k, v in t.user_attrs.items() if k.startswith("run_id/")}}
        for t in optuna_study.get_trials(deepcopy=False)
    ]  # fmt: skip


def importance(optuna_study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA parameter importances over the completed trials, with the evaluator's name;
    empty when too few trials vary."""
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        scores = optuna.importance.get_param_importances(optuna_study, evaluator=evaluator)
    except (RuntimeError, ValueError):
        return {}, ""
    return dict(scores), "fANOVA (optuna.importance.FanovaImportanceEvaluator)"


def load_studies() -> Registry[Study]:
    """Registers the studies of ``ablations/studies.py`` (with the axes)."""
    from workbench.axes import load_ablations

    load_ablations()
    return STUDIES


#: The command of a worker process (not ``-m workbench.search``: running this module as
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
        data = json.loads(args.study_json)
        data["axes"] = {k: tuple(v) for k, v in data["axes"].items()}
        data["seeds"] = tuple(data["seeds"])
        study = Study(**data)
    work(study, storage=args.storage, home=args.home, uri=args.tracking_uri,
         parent_run_id=args.parent_run_id)  # fmt: skip
