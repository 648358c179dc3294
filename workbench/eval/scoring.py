"""A trial's predictions scored by the dataset's metric, item by item, and the majority-answer
floor."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workbench.eval.metrics import accuracy, cider, cider_per_item, roc_auc, vqa_accuracy
from workbench.eval.rank import answer_group, canonical_answer
from workbench.eval.tasks import Dataset, Item, fixed_subset


@dataclass(frozen=True)
class Scored:
    """A trial's headline metric, its details, and one row per test item.

    Every row has ``id``, ``prediction`` and ``score``: the item's per-image CIDEr-D, its VQA
    accuracy, or 1.0 for a correct class (0.0 otherwise). VQA rows add ``question``,
    ``question_type`` and ``answer_type``; classification rows ``label``, and for a binary task
    ``margin``, the log-likelihood of the positive class less the negative's (what ROC AUC ranks).
    """

    value: float
    details: dict[str, Any]
    items: list[dict[str, Any]]


def score(dataset: Dataset, test: list[Item], predictions: dict[str, Any]) -> Scored:
    """The headline metric over ``test`` with its details (the CIDEr tokenizer, VQA accuracy by
    the annotations' question and answer types, or the accuracy beside a ROC AUC) and items.

    Args:
        predictions: by item id, the generated text or ``{class name: log-likelihood}``.
    """
    if dataset.kind == "captioning":
        per_item, tokenizer = cider_per_item(
            {it.id: predictions[it.id] for it in test}, {it.id: list(it.answers) for it in test}
        )
        items = [
            {"id": it.id, "prediction": predictions[it.id], "score": per_item[it.id]} for it in test
        ]
        return Scored(statistics.fmean(per_item.values()), {"cider_tokenizer": tokenizer}, items)
    if dataset.closed_set:
        return _closed_set(test, predictions)
    if dataset.kind == "vqa":
        items = [
            {"id": it.id, "question": it.question, "question_type": it.question_type,
             "answer_type": it.answer_type, "prediction": predictions[it.id],
             "score": vqa_accuracy(predictions[it.id], it.answers)}
            for it in test
        ]  # fmt: skip
        details = {f"by_{kind}": _mean_by(items, kind) for kind in ("question_type", "answer_type")}
        return Scored(statistics.fmean(row["score"] for row in items), details, items)
    return _classification(dataset, test, predictions)


def _closed_set(test: list[Item], predictions: dict[str, dict[str, float]]) -> Scored:
    """Accuracy of the most likely candidate against the item's canonical answer; each row also
    holds ``logp_right``, the right answer's summed log-likelihood, and ``candidates``."""
    items: list[dict[str, Any]] = []
    for it in test:
        logliks = predictions[it.id]
        right, best = canonical_answer(it), max(logliks, key=logliks.__getitem__)
        items.append({"id": it.id, "question": it.question, "question_type": it.question_type,
                      "answer_type": it.answer_type, "label": right, "prediction": best,
                      "score": float(best == right), "logp_right": logliks[right],
                      "candidates": len(logliks)})  # fmt: skip
    details = {
        "logp_right": statistics.fmean(row["logp_right"] for row in items),
        **{f"by_{kind}": _mean_by(items, kind) for kind in ("question_type", "answer_type")},
    }
    return Scored(statistics.fmean(row["score"] for row in items), details, items)


def _classification(dataset: Dataset, test: list[Item], predictions: dict[str, Any]) -> Scored:
    """Top-1 by log-likelihood; a binary task's headline is the ROC AUC of the margin."""
    best = [max(predictions[it.id], key=predictions[it.id].get) for it in test]
    labels = [it.answers[0] for it in test]
    items: list[dict[str, Any]] = [
        {"id": it.id, "label": y, "prediction": p, "score": float(p == y)}
        for it, p, y in zip(test, best, labels, strict=True)
    ]
    if dataset.metric != "roc_auc":
        return Scored(accuracy(best, labels), {}, items)
    negative, positive = dataset.classnames[:2]
    for it, row in zip(test, items, strict=True):
        row["margin"] = predictions[it.id][positive] - predictions[it.id][negative]
    auc = roc_auc([row["margin"] for row in items], [y == positive for y in labels])
    return Scored(auc, {"accuracy": accuracy(best, labels)}, items)


def _mean_by(items: list[dict[str, Any]], key: str) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for row in items:
        groups.setdefault(row[key], []).append(row["score"])
    return {k: statistics.fmean(v) for k, v in sorted(groups.items())}


def majority_baseline(dataset: Dataset, subset: int | None = None, seed: int = 0) -> float:
    """The score of always giving the query set's most frequent answer (a floor to beat); for
    VQA, the most frequent answer of the annotations' question type (of the question's closed
    answer set, :func:`~workbench.eval.rank.answer_group`, for a ranked VQA task)."""
    test = fixed_subset(dataset, subset, seed)
    counts = Counter(it.answers[0] for it in dataset.query)
    top = counts.most_common(1)[0][0]
    if dataset.kind == "vqa":
        group = answer_group if dataset.closed_set else (lambda it: it.question_type)
        by_type: dict[str, Counter[str]] = {}
        for it in dataset.query:
            by_type.setdefault(group(it), Counter())[canonical_answer(it)] += 1
        guess = {k: c.most_common(1)[0][0] for k, c in by_type.items()}
        guesses = [guess.get(group(it), top) for it in test]
        if dataset.closed_set:
            return accuracy(guesses, [canonical_answer(it) for it in test])
        values = [vqa_accuracy(g, it.answers) for g, it in zip(guesses, test, strict=True)]
        return sum(values) / len(values)
    if dataset.kind == "classification":
        return accuracy([top] * len(test), [it.answers[0] for it in test])
    value, _ = cider({it.id: top for it in test}, {it.id: list(it.answers) for it in test})
    return value
