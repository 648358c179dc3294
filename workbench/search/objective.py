"""A trial's objective: the axis values it suggests, one tracked run per seed (MLflow child runs
of the study's parent run, tagged with the study, the trial, the axis values and the
``base_config_id`` of the spec without them), the mean of the objective metric over the seeds."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from workbench.search.display import Quiet
from workbench.spec import RunSpec, SpecError
from workbench.study import Study

if TYPE_CHECKING:
    from workbench.train.result import RunResult

Objective = Callable[[optuna.Trial], float | tuple[float, float]]
OnEval = Callable[[int, dict[str, float]], None]
OnStep = Callable[[int, dict[str, float]], None]


def _suggest(trial: optuna.Trial, study: Study) -> dict[str, str]:
    choices = {}
    for name, values in study.axes.items():
        if study.design == "tpe" and len(values) == 2 and all(isinstance(v, float) for v in values):
            choices[name] = str(trial.suggest_float(name, values[0], values[1]))
        else:
            choices[name] = trial.suggest_categorical(name, [str(v) for v in values])
    return choices


def _run_seed(
    spec: RunSpec,
    study: Study,
    home: Path,
    uri: str,
    tags: Mapping[str, Any],
    on_eval: OnEval,
    on_step: OnStep,
) -> RunResult:
    """One seed of a trial, tracked (and resumed if it ran before), in this process or as one
    multi-process job (this worker asks and tells; the job's ranks train); its ``RunResult``.
    ``on_step`` sees the steps of an in-process run only."""
    from workbench.runs import Processes, RunOptions, execute

    options = RunOptions(home=home, tracking_uri=uri, tags=tags, resume=True,
                         show_progress=False, on_eval=on_eval, on_step=on_step)  # fmt: skip
    result = execute(spec, options, Processes(nproc_per_node=study.nproc_per_node))
    assert result is not None  # rank 0 is on this machine
    return result


def _pruning_report(trial: optuna.Trial, study: Study, offset: int) -> OnEval:
    """Reports the objective's intermediate values of the seed at ``offset`` (steps of the
    seeds one after the other) and stops the run when the pruner says so."""
    from workbench.train.result import Stopped

    def report(step: int, metrics: dict[str, float]) -> None:
        if study.pruner == "none" or study.objective not in metrics:
            return
        trial.report(metrics[study.objective], offset + step)
        if trial.should_prune():
            raise Stopped(f"pruned by the {study.pruner} pruner at step {step}")

    return report


def _objective_value(result: RunResult, key: str) -> float:
    """``key`` of a run: its final summary, else its last logged value."""
    metric = result.final.get(key, result.history[-1].get(key) if result.history else None)
    if metric is None:
        raise SpecError(f"the runs have no metric {key!r}")
    return float(metric)


def objective_for(
    study: Study, home: Path, uri: str, parent_run_id: str, watch: Quiet | None = None
) -> Objective:
    """The Optuna objective of ``study``: the mean over seeds (and the seconds, when
    ``compute_objective``) of the runs of the suggested configuration; ``watch`` is told of
    each trial, run and step."""
    from workbench.axes import apply_all
    from workbench.train.result import Stopped

    base = study.base_spec(home)
    watch = watch or Quiet()

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        choices = _suggest(trial, study)
        watch.trial_started(trial.number, choices)
        spec = apply_all(base, choices)
        tags = {"mlflow.parentRunId": parent_run_id, "study": study.name, "trial": trial.number,
                "base_config_id": base.config_id,
                **{f"axis.{k}": v for k, v in choices.items()}}  # fmt: skip
        values: list[float] = []
        seconds = 0.0
        for index, seed in enumerate(study.seeds):
            report = _pruning_report(trial, study, index * spec.train.steps)
            watch.run_started(seed, index, spec.train.steps)
            try:
                result = _run_seed(spec.override({"train.seed": seed}), study, home, uri, tags,
                                   report, watch.step)  # fmt: skip
            except Stopped as stop:
                trial.set_user_attr(f"run_id/seed{seed}", stop.run_id)
                raise optuna.TrialPruned(str(stop)) from None
            seconds += float(result.final.get("final/wall_s", 0.0))
            values.append(_objective_value(result, study.objective))
            trial.set_user_attr(f"run_id/seed{seed}", result.run_id)
        trial.set_user_attr("seconds", seconds)
        mean = sum(values) / len(values)
        return (mean, seconds) if study.compute_objective else mean

    return objective


def mirror_to_mlflow(uri: str) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """After each trial: its state, value and intermediate values onto its MLflow runs."""
    from workbench.track import log_metrics_to, set_run_tags

    def mirror(optuna_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tags: dict[str, Any] = {
            "trial_state": trial.state.name,
            "optuna.trial_number": trial.number,
        }
        if trial.values:
            tags["trial_value"] = trial.values[0]
        for key, run_id in trial.user_attrs.items():
            if key.startswith("run_id/") and run_id:
                set_run_tags(uri, run_id, tags)
                for step, value in trial.intermediate_values.items():
                    log_metrics_to(uri, run_id, {"trial/intermediate": value}, int(step))

    return mirror
