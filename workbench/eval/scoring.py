"""A trial's predictions scored by the dataset's metric, and the majority-answer floor."""

from __future__ import annotations

from collections import Counter
from typing import Any

from workbench.eval.metrics import accuracy, cider, roc_auc, vqa_accuracy
from workbench.eval.tasks import Dataset, Item, fixed_subset


def score(
    dataset: Dataset, test: list[Item], predictions: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """The headline metric over ``test``, and its details (the CIDEr tokenizer, VQA accuracy by
    question type, or the accuracy beside a ROC AUC).

    Args:
        predictions: by item id, the generated text or ``{class name: log-likelihood}``.
    """
    if dataset.kind == "captioning":
        value, tokenizer = cider(
            {it.id: predictions[it.id] for it in test}, {it.id: list(it.answers) for it in test}
        )
        return value, {"cider_tokenizer": tokenizer}
    if dataset.kind == "vqa":
        values = [vqa_accuracy(predictions[it.id], it.answers) for it in test]
        by_type: dict[str, list[float]] = {}
        for it, v in zip(test, values, strict=True):
            by_type.setdefault(question_type(it.question), []).append(v)
        breakdown = {k: sum(v) / len(v) for k, v in sorted(by_type.items())}
        return sum(values) / len(values), {"by_question_type": breakdown}
    best = [max(predictions[it.id], key=predictions[it.id].get) for it in test]
    labels = [it.answers[0] for it in test]
    if dataset.metric == "roc_auc":
        positive = dataset.classnames[1]
        margin = [
            predictions[it.id][positive] - predictions[it.id][dataset.classnames[0]] for it in test
        ]
        return roc_auc(margin, [y == positive for y in labels]), {
            "accuracy": accuracy(best, labels)
        }
    return accuracy(best, labels), {}


def question_type(question: str) -> str:
    """The first two words of a question ("what colour", "how many"): a VQA breakdown key."""
    return " ".join(question.lower().split()[:2])


def majority_baseline(dataset: Dataset, subset: int | None = None, seed: int = 0) -> float:
    """The score of always giving the query set's most frequent answer (a floor to beat)."""
    test = fixed_subset(dataset, subset, seed)
    counts = Counter(it.answers[0] for it in dataset.query)
    top = counts.most_common(1)[0][0]
    if dataset.kind == "vqa":  # the most frequent answer of each question type
        by_type: dict[str, Counter[str]] = {}
        for it in dataset.query:
            by_type.setdefault(question_type(it.question), Counter())[it.answers[0]] += 1
        guess = {k: c.most_common(1)[0][0] for k, c in by_type.items()}
        values = [
            vqa_accuracy(guess.get(question_type(it.question), top), it.answers) for it in test
        ]
        return sum(values) / len(values)
    if dataset.kind == "classification":
        return accuracy([top] * len(test), [it.answers[0] for it in test])
    value, _ = cider({it.id: top for it in test}, {it.id: list(it.answers) for it in test})
    return value
