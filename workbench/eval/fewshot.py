"""Few-shot evaluation with in-context demonstrations, as the reference protocol does it.

- Prompts (:mod:`workbench.eval.prompts`): the reference templates; zero shots means two
  text-only demonstrations.
- Demonstrations: random from a query set (``query_size`` examples drawn per trial), or RICES
  (:mod:`workbench.eval.rices`): the query examples whose CLIP image embeddings are most similar
  to the test image, the most similar last.
- Predictions (:mod:`workbench.eval.predict`): beam search, read as the reference reads it
  (:func:`~workbench.eval.prompts.postprocess`), or class names ranked by their mean per-token
  log-likelihood; scored by :mod:`workbench.eval.scoring`, item by item (``EvalResult.items``).
- Several trials (seeds) give the mean and standard deviation; the test subset is the same in
  every trial, only the demonstrations change.

Across a :class:`~workbench.eval.group.Group` of processes (DDP/FSDP) each rank takes every
``world_size``-th test example (padded to equal batches, the padding dropped before scoring), so
every example counts exactly once.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from workbench.eval.group import Group
from workbench.eval.predict import predict
from workbench.eval.prompts import EOC, MEDIA, demo_text, postprocess, prompt, query_text
from workbench.eval.rices import Rices
from workbench.eval.scoring import majority_baseline, score
from workbench.eval.tasks import Dataset, Item, fixed_subset

__all__ = [
    "EOC", "MEDIA", "EvalResult", "Rices", "demo_text", "evaluate", "majority_baseline",
    "postprocess", "predict", "prompt", "query_text",
]  # fmt: skip

_predict = predict  # the name the tests have always used

Answer = Callable[[list[Item], list[list[Item]]], list[Any]]  # (batch, its demos) -> answers


@dataclass
class EvalResult:
    task: str
    shots: int
    metric: str
    mean: float
    std: float
    trials: list[float]
    n: int  # test examples per trial
    details: dict[str, Any] = field(default_factory=dict)
    # one row per test item and trial: ``trial`` and the columns of scoring.Scored.items
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The MLflow metric name: ``eval/<task>/<shots>shot``."""
        return f"eval/{self.task}/{self.shots}shot"

    def table(self) -> pl.DataFrame:
        """The per-item rows, with ``task`` and ``shots`` columns in front."""
        rows = [{"task": self.task, "shots": self.shots, **row} for row in self.items]
        return pl.DataFrame(rows, infer_schema_length=None)


def evaluate(
    model: Any,
    tokenizer: Any,
    processor: Any,
    dataset: Dataset,
    shots: int,
    *,
    trials: int = 3,
    demos: Literal["random", "rices"] = "random",
    query_size: int = 2048,
    subset: int | None = None,
    batch_size: int = 8,
    num_beams: int = 3,
    seed: int = 0,
    group: Group | None = None,
) -> EvalResult:
    """Evaluates ``model`` on ``dataset`` at ``shots`` demonstrations over ``trials`` seeds.

    Args:
        model: the Flamingo model (the core module; under FSDP the sharded root).
        subset: evaluate the first ``subset`` test examples of a fixed shuffle (all if None).
        group: the processes to split the test examples across; None for one process.
    """
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    group = group or Group()
    test = fixed_subset(dataset, subset, seed)
    k = shots if shots > 0 else 2
    rices = Rices(model, processor, dataset.query) if demos == "rices" and shots > 0 else None
    answer = partial(predict, model, tokenizer, processor, dataset,
                     shots=shots, num_beams=num_beams, group=group)  # fmt: skip
    was_training = model.training
    model.eval()
    scores: list[float] = []
    details: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    try:
        for trial in range(trials):
            rng = np.random.default_rng([seed, trial])
            chosen = _draw_demos(dataset, test, k, query_size, rng)
            demos_of = partial(_demos_of, chosen=chosen, rices=rices, k=k)
            predictions = _predictions(answer, test, demos_of, batch_size, group)
            scored = score(dataset, test, predictions)
            scores.append(scored.value)
            details.update(scored.details)
            items += [{"trial": trial, **row} for row in scored.items]
            details.setdefault("examples", [(it.id, predictions[it.id]) for it in test[:3]])
    finally:
        model.train(was_training)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return EvalResult(dataset.name, shots, dataset.metric, statistics.fmean(scores), std, scores,
                      len(test), details, items)  # fmt: skip


def _draw_demos(
    dataset: Dataset, test: list[Item], k: int, query_size: int, rng: np.random.Generator
) -> dict[str, list[Item]]:
    """A trial's random demonstrations: ``k`` per test item from a pool of ``query_size`` query
    examples (drawn even under RICES, so that every trial's draws stay the same)."""
    pool_size = min(query_size, len(dataset.query))
    pool = [dataset.query[i] for i in rng.choice(len(dataset.query), pool_size, replace=False)]
    if len(pool) < k:
        raise ValueError(f"{dataset.name}: {len(pool)} query examples for {k} demonstrations")
    return {it.id: [pool[j] for j in rng.choice(len(pool), k, replace=False)] for it in test}


def _demos_of(
    batch: list[Item], *, chosen: dict[str, list[Item]], rices: Rices | None, k: int
) -> list[list[Item]]:
    """Each item's demonstrations: its ``k`` most similar query examples (RICES) or the draw."""
    return rices.demos(batch, k) if rices is not None else [chosen[it.id] for it in batch]


def _predictions(
    answer: Answer,
    test: list[Item],
    demos_of: Callable[[list[Item]], list[list[Item]]],
    batch_size: int,
    group: Group,
) -> dict[str, Any]:
    """Every test item's answer by id: this rank answers every ``world_size``-th item, in
    batches padded so that every rank runs as many, and the ranks' answers are gathered."""
    mine = test[group.rank :: group.world_size]
    per_rank = math.ceil(len(test) / group.world_size)
    padded = mine + [test[0]] * (per_rank - len(mine))  # equal batches on every rank
    outputs: list[tuple[str, Any]] = []
    for start in range(0, len(padded), batch_size):
        batch = padded[start : start + batch_size]
        real = min(max(len(mine) - start, 0), len(batch))  # the rest is padding
        answers = answer(batch, demos_of(batch))
        outputs += list(zip([it.id for it in batch[:real]], answers[:real], strict=True))
    parts = cast(list[list[tuple[str, Any]]], group.all(outputs))
    return dict(item for part in parts for item in part)
