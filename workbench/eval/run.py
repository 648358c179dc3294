"""Evaluation from a spec: checking ``eval.*``, the periodic evaluator the training loop calls,
the task-by-shots table ``wb eval`` prints, and the per-item results as parquet files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import polars as pl

from workbench.data.batch import Batch
from workbench.eval.fewshot import EvalResult, evaluate
from workbench.eval.group import Group
from workbench.eval.scoring import majority_baseline
from workbench.eval.tasks import TASKS, Dataset, load_task
from workbench.eval.validation import read_validation, validation_loss, validation_shards
from workbench.spec import DataSpec, EvalSpec, SpecError

DEMOS = ("random", "rices")


def check_eval_spec(spec: EvalSpec) -> None:
    """Raises :class:`~workbench.spec.SpecError` unless ``spec`` can run (before any model is
    built): periodic evaluation needs known tasks in an existing evaluation directory, or
    validation sets, or both."""
    if spec.every < 0:
        raise SpecError("eval.every must be >= 0")
    if not spec.every:
        return
    if not spec.tasks and not spec.validation:
        raise SpecError("eval.every > 0 needs eval.tasks (with eval.data) or eval.validation")
    if spec.tasks and not spec.data:
        raise SpecError("eval.tasks need eval.data (an eval directory)")
    unknown = [t for t in spec.tasks if t not in TASKS]
    if unknown:
        raise SpecError(f"eval.tasks: unknown {unknown}; valid: {TASKS.names()}")
    if spec.tasks and not Path(spec.data).is_dir():
        raise SpecError(f"eval.data: {spec.data} is not a directory")
    if spec.validation:
        validation_shards(Path(spec.validation))  # raises SpecError when it holds none


def save_items(result: EvalResult, directory: Path, step: int | None = None) -> Path:
    """Writes ``result``'s per-item rows to ``directory/<task>_<shots>shot[_step<N>].parquet``
    (the directory made if needed) and returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "" if step is None else f"_step{step:08d}"
    path = directory / f"{result.task}_{result.shots}shot{suffix}.parquet"
    result.table().write_parquet(path)
    return path


class Evaluator:
    """Few-shot evaluation during training: ``eval/<task>/<shots>shot`` (on every rank).

    The datasets are read once, when ``spec.every > 0``; otherwise it is disabled and never due.
    ``results`` holds the last call's results (their ``items`` included); with ``items_dir``,
    rank 0 writes each to a parquet file there (:func:`save_items`), listed in ``item_files``.
    """

    def __init__(self, spec: EvalSpec, model: Any, tokenizer: Any, processor: Any,
                 group: Group | None = None, items_dir: Path | None = None,
                 data: DataSpec | None = None) -> None:  # fmt: skip
        self.spec, self.model, self.tokenizer = spec, model, tokenizer
        self.processor, self.group, self.items_dir = processor, group, items_dir
        self.enabled = spec.every > 0
        self.datasets: dict[str, Dataset] = {}
        self.validation: dict[str, list[Batch]] = {}
        self.results: list[EvalResult] = []
        self.item_files: list[Path] = []
        if self.enabled:
            self.datasets = {t: load_task(t, spec.data) for t in spec.tasks}
            if spec.validation:
                self.validation = read_validation(data or DataSpec(), Path(spec.validation),
                                                  tokenizer, processor)  # fmt: skip

    def due(self, step: int, total_steps: int) -> bool:
        """Whether to evaluate after ``step`` optimizer steps: every ``every`` (step 0 included)
        and at the last."""
        return self.enabled and (step % self.spec.every == 0 or step == total_steps)

    def __call__(self, step: int | None = None) -> dict[str, float]:
        """Every task at every shot count; ``step`` names the parquet files."""
        metrics: dict[str, float] = {}
        self.results, self.item_files = [], []
        for name, dataset in self.datasets.items():
            for shots in self.spec.shots:
                result = evaluate(
                    self.model, self.tokenizer, self.processor, dataset, shots,
                    trials=self.spec.trials, demos=self.spec.demos,
                    query_size=self.spec.query_size, subset=self.spec.subset,
                    batch_size=self.spec.batch_size, group=self.group,
                )  # fmt: skip
                metrics[f"eval/{name}/{shots}shot"] = result.mean
                if "logp_right" in result.details:
                    metrics[f"eval/{name}/{shots}shot/logp_right"] = result.details["logp_right"]
                self.results.append(result)
        writer = self.group is None or self.group.rank == 0
        folder = self.items_dir if writer else None
        if folder is not None:
            self.item_files = [save_items(r, folder, step) for r in self.results]
        if self.validation:
            device = next(p for p in self.model.parameters()).device
            losses, items = validation_loss(self.model, self.validation, device)
            metrics.update(losses)
            if folder is not None:  # (made here too when no task wrote into it)
                folder.mkdir(parents=True, exist_ok=True)
                suffix = "" if step is None else f"_step{step:08d}"
                items.write_parquet(folder / f"validation{suffix}.parquet")
                self.item_files.append(folder / f"validation{suffix}.parquet")
        return metrics


@dataclass(frozen=True)
class TaskScore:
    """One task at one shot count, beside the score of always giving the most frequent answer;
    ``items_file``: the parquet file of its items, when one was written."""

    task: str
    shots: int
    result: EvalResult
    majority: float
    items_file: Path | None = None

    @property
    def items(self) -> pl.DataFrame:
        """One row per test item and trial (:meth:`EvalResult.table`)."""
        return self.result.table()

    def line(self) -> str:
        r = self.result
        return (
            f"{self.task} {self.shots}-shot {r.metric}: {r.mean:.4f} ± {r.std:.4f} over "
            f"{len(r.trials)} trials, {r.n} examples (majority answer: {self.majority:.4f})"
        )


def evaluate_tasks(
    model: Any,
    tokenizer: Any,
    processor: Any,
    root: Path,
    tasks: Sequence[str],
    shots: Sequence[int],
    *,
    trials: int,
    subset: int | None,
    demos: str,
    items_dir: Path | None = None,
) -> list[TaskScore]:
    """Every registered task in ``tasks`` (read from the evaluation directory ``root``) at every
    shot count, task by task.

    Args:
        subset: the test examples of each task (all if None).
        demos: ``random`` or ``rices``.
        items_dir: where to write each result's items as parquet (:func:`save_items`); None
            writes nothing.
    """
    if demos not in DEMOS:
        raise SpecError(f"demos: {demos!r} is not random or rices")
    how = cast(Literal["random", "rices"], demos)
    scores = []
    for name in tasks:
        dataset = load_task(name, root)
        floor = majority_baseline(dataset, subset)
        for k in shots:
            result = evaluate(
                model, tokenizer, processor, dataset, k, trials=trials, subset=subset, demos=how
            )
            path = None if items_dir is None else save_items(result, items_dir)
            scores.append(TaskScore(name, k, result, floor, path))
    return scores
