"""A finished study as plain rows: its trials, its Pareto front, its parameter importances."""

from __future__ import annotations

from typing import Any

import optuna


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
