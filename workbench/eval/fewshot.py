"""Few-shot evaluation with in-context demonstrations, as the reference protocol does it.

- Prompts: captioning ``<image>Output:{caption}<|endofchunk|>``, VQA
  ``<image>Question:{q} Short answer:{a}<|endofchunk|>``, classification
  ``<image>Output:{label}<|endofchunk|>``; demonstrations joined with a newline for captioning
  and VQA. Zero shots means two text-only demonstrations (their ``<image>`` removed).
- Demonstrations: random from a query set (``query_size`` examples drawn per trial), or RICES:
  the query examples whose CLIP image embeddings are most similar to the test image, the most
  similar last.
- Decoding: beam search (3 beams), the dataset's new-token budget, stop at ``<|endofchunk|>``,
  only the new tokens decoded. Classification ranks class names by their mean per-token
  log-likelihood.
- Several trials (seeds) give the mean and standard deviation; the test subset is the same in
  every trial, only the demonstrations change.

Under DDP/FSDP each rank takes every ``world``-th test example (padded to equal batches, the
padding dropped before scoring), so every example counts exactly once.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from workbench.eval.metrics import accuracy, cider, roc_auc, vqa_accuracy
from workbench.eval.tasks import Dataset, Item

MEDIA, EOC = "<image>", "<|endofchunk|>"


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

    @property
    def key(self) -> str:
        """The MLflow metric name: ``eval/<task>/<shots>shot``."""
        return f"eval/{self.task}/{self.shots}shot"


def demo_text(dataset: Dataset, item: Item) -> str:
    if dataset.kind == "captioning":
        return f"{MEDIA}Output:{item.answers[0]}{EOC}"
    if dataset.kind == "vqa":
        return f"{MEDIA}Question:{item.question} Short answer:{item.answers[0]}{EOC}"
    return query_text(dataset, item) + f"{item.answers[0]}{EOC}"


def query_text(dataset: Dataset, item: Item) -> str:
    if dataset.kind == "vqa":
        return f"{MEDIA}Question:{item.question} Short answer:"
    if dataset.kind == "classification" and item.text:  # Hateful Memes
        return f"{MEDIA}is an image with: '{item.text}' written on it. Is it hateful? Answer:"
    return f"{MEDIA}Output:"


def prompt(dataset: Dataset, demos: Sequence[Item], query: Item, text_only_demos: bool) -> str:
    """The whole prompt: demonstrations, then the query."""
    texts = [demo_text(dataset, d) for d in demos]
    if text_only_demos:
        texts = [t.replace(MEDIA, "") for t in texts]
    joiner = "\n" if dataset.kind in ("captioning", "vqa") else ""
    return joiner.join([*texts, query_text(dataset, query)])


def postprocess(dataset: Dataset, text: str, eos: str = "") -> str:
    """The answer in the generated text: before ``<|endofchunk|>`` (or the end of text) and,
    for VQA, before the model starts another question."""
    text = text.split(EOC)[0]
    if eos:
        text = text.split(eos)[0]
    if dataset.kind == "vqa":  # up to another question, a newline or a sentence's end
        text = re.split(r"Question|Answer|Short|\n|\.(?:\s|$)", text)[0]
    return text.strip()


class Rices:
    """Retrieval-based in-context example selection over CLIP image embeddings.

    The query set's embeddings are computed once per (frozen) vision encoder and query set, and
    reused by every later evaluation (periodic evaluation during training, several shots).
    """

    _cache: ClassVar[dict[tuple[int, tuple[str, ...]], torch.Tensor]] = {}

    def __init__(self, model: Any, processor: Any, query: Sequence[Item], batch_size: int = 32):
        self.model, self.processor, self.query = model, processor, list(query)
        key = (id(model.vision), tuple(str(it.image) for it in self.query))
        if key not in self._cache:
            self._cache[key] = self.embed(self.query, batch_size)
        self.features = self._cache[key]  # (Q, E)

    def embed(self, items: Sequence[Item], batch_size: int = 32) -> torch.Tensor:
        device = next(self.model.vision.parameters()).device
        chunks = []
        for i in range(0, len(items), batch_size):
            images = torch.stack(
                [self.processor(_image(it.image)) for it in items[i : i + batch_size]]
            )
            chunks.append(self.model.vision.embed(images.to(device)).cpu())
        return torch.cat(chunks)

    def demos(self, items: Sequence[Item], k: int) -> list[list[Item]]:
        """For each item, its ``k`` most similar query examples, the most similar last."""
        similarity = self.embed(items) @ self.features.T  # (B, Q)
        top = similarity.topk(k, dim=1).indices.flip(1)
        return [[self.query[int(j)] for j in row] for row in top]


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
    where: Any = None,
) -> EvalResult:
    """Evaluates ``model`` on ``dataset`` at ``shots`` demonstrations over ``trials`` seeds.

    Args:
        model: the Flamingo model (the core module; under FSDP the sharded root).
        subset: evaluate the first ``subset`` test examples of a fixed shuffle (all if None).
        where: the process placement (``workbench.train.parallel.Dist``) to split examples
            across ranks; None for one process.
    """
    from workbench.train import parallel

    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    test = list(dataset.test)
    order = np.random.default_rng([seed, 7]).permutation(len(test))
    test = [test[i] for i in order[: subset or len(test)]]
    rank, world = (where.rank, where.world_size) if where is not None else (0, 1)
    k = shots if shots > 0 else 2
    rices = Rices(model, processor, dataset.query) if demos == "rices" and shots > 0 else None
    was_training = model.training
    model.eval()
    scores: list[float] = []
    details: dict[str, Any] = {}
    try:
        for trial in range(trials):
            rng = np.random.default_rng([seed, trial])
            pool_size = min(query_size, len(dataset.query))
            pool = [
                dataset.query[i] for i in rng.choice(len(dataset.query), pool_size, replace=False)
            ]
            if len(pool) < k:
                raise ValueError(
                    f"{dataset.name}: {len(pool)} query examples for {k} demonstrations"
                )
            chosen = {
                it.id: [pool[j] for j in rng.choice(len(pool), k, replace=False)] for it in test
            }
            mine = test[rank::world]
            per_rank = math.ceil(len(test) / world)
            padded = mine + [test[0]] * (per_rank - len(mine))  # equal batches on every rank
            outputs: list[tuple[str, Any]] = []
            for start in range(0, len(padded), batch_size):
                batch = padded[start : start + batch_size]
                real = min(max(len(mine) - start, 0), len(batch))
                batch_demos = (
                    rices.demos(batch, k) if rices is not None else [chosen[it.id] for it in batch]
                )
                answers = _predict(
                    model,
                    tokenizer,
                    processor,
                    dataset,
                    batch,
                    batch_demos,
                    shots,
                    num_beams,
                    where,
                )
                outputs += list(zip([it.id for it in batch[:real]], answers[:real], strict=True))
            gathered = parallel.gather_objects(outputs, where) if where is not None else [outputs]
            predictions = dict(item for part in gathered for item in part)  # type: ignore[attr-defined]
            score, info = _score(dataset, test, predictions)
            scores.append(score)
            details.update(info)
            details.setdefault("examples", [(it.id, predictions[it.id]) for it in test[:3]])
    finally:
        model.train(was_training)
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return EvalResult(dataset.name, shots, dataset.metric, statistics.fmean(scores), std, scores,
                      len(test), details)  # fmt: skip


def _image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _batch_images(
    processor: Any, rows: list[list[Path]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3, H, W) images and (B, T) mask, rows zero-padded to the longest."""
    t = max(max(len(r) for r in rows), 1)
    tensors = [[processor(_image(p)) for p in row] for row in rows]
    shape = next((x[0].shape for x in tensors if x), (3, 1, 1))
    images = torch.zeros(len(rows), t, *shape)
    mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, row in enumerate(tensors):
        for j, tensor in enumerate(row):
            images[i, j], mask[i, j] = tensor, True
    return images.to(device), mask.to(device)


def _predict(
    model: Any,
    tokenizer: Any,
    processor: Any,
    dataset: Dataset,
    batch: list[Item],
    demos: list[list[Item]],
    shots: int,
    num_beams: int,
    where: Any,
) -> list[Any]:
    device = next(p for p in model.parameters()).device
    text_only = shots == 0
    texts = [prompt(dataset, d, it, text_only) for it, d in zip(batch, demos, strict=True)]
    paths = [
        ([] if text_only else [d.image for d in ds]) + [it.image]
        for it, ds in zip(batch, demos, strict=True)
    ]
    images, mask = _batch_images(processor, paths, device)
    core = model.module if hasattr(model, "module") else model
    if dataset.kind == "classification":
        return [_classify(core, tokenizer, dataset, images[i : i + 1], mask[i : i + 1], texts[i])
                for i in range(len(batch))]  # fmt: skip
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    input_ids, attention = enc.input_ids.to(device), enc.attention_mask.to(device)
    synced = where is not None and where.strategy == "fsdp" and where.world_size > 1
    with torch.no_grad():
        out = core.generate(
            images, mask, input_ids, attention,
            max_new_tokens=dataset.max_new_tokens, num_beams=num_beams, synced_gpus=synced,
            eos_token_id=[core.config.eoc_token_id, tokenizer.eos_token_id],
        )  # fmt: skip
    new = out[:, input_ids.shape[1] :]
    eos = tokenizer.eos_token or ""
    return [
        postprocess(dataset, tokenizer.decode(row, skip_special_tokens=False), eos) for row in new
    ]


def _classify(
    model: Any,
    tokenizer: Any,
    dataset: Dataset,
    images: torch.Tensor,
    mask: torch.Tensor,
    text: str,
) -> dict[str, float]:
    """Mean per-token log-likelihood of each class name after the prompt."""
    prefix = tokenizer(text).input_ids
    rows = [
        prefix + tokenizer(name, add_special_tokens=False).input_ids for name in dataset.classnames
    ]
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=images.device)
    attention = torch.tensor(
        [[1] * len(r) + [0] * (length - len(r)) for r in rows], device=images.device
    )
    n = len(rows)
    with torch.no_grad():
        logp = model.score(images.expand(n, *images.shape[1:]), mask.expand(n, -1), ids, attention)
    out = {}
    for c, (name, row) in enumerate(zip(dataset.classnames, rows, strict=True)):
        span = logp[c, len(prefix) - 1 : len(row) - 1]  # predictions of the class-name tokens
        out[name] = float(span.mean())
    return out


def _score(
    dataset: Dataset, test: list[Item], predictions: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    if dataset.kind == "captioning":
        score, tokenizer = cider(
            {it.id: predictions[it.id] for it in test}, {it.id: list(it.answers) for it in test}
        )
        return score, {"cider_tokenizer": tokenizer}
    if dataset.kind == "vqa":
        values = [vqa_accuracy(predictions[it.id], it.answers) for it in test]
        by_type: dict[str, list[float]] = {}
        for it, value in zip(test, values, strict=True):
            by_type.setdefault(question_type(it.question), []).append(value)
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
    from collections import Counter

    test = list(dataset.test)
    order = np.random.default_rng([seed, 7]).permutation(len(test))
    test = [test[i] for i in order[: subset or len(test)]]
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
    score, _ = cider({it.id: top for it in test}, {it.id: list(it.answers) for it in test})
    return score
