"""Rank classification: every candidate answer scored by its log-likelihood after the prompt.

For questions with a closed answer set (the shapes world's colour, shape, count, position and
yes/no questions) the model's answer is the candidate it finds most likely, which measures what
it knows with far less noise than a generated answer that must also stop in the right place. A
candidate is the answer text followed by ``<|endofchunk|>`` (how the demonstrations end), so
"red" and "red square" are told apart. The prompt, with its images, is encoded once: its KV cache
is repeated for the candidates, which are then run together in one batch.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import torch

from workbench.eval.prompts import EOC
from workbench.eval.tasks import Dataset, Item


def canonical_answer(item: Item) -> str:
    """The most frequent of an item's reference answers (ties: the first given)."""
    return Counter(item.answers).most_common(1)[0][0]


def answer_group(item: Item) -> str:
    """Which closed set answers ``item``: its answer type and the first two words of its
    question ("number/how many", "other/what colour", "other/what shape", "yes/no/is there"),
    so that a colour question ranks colours, not shapes."""
    return "/".join([item.answer_type, " ".join(item.question.lower().split()[:2])])


def candidates_by_type(dataset: Dataset) -> dict[str, tuple[str, ...]]:
    """The closed answer set of each :func:`answer_group`: every canonical answer of that group
    in the query and test sets, sorted (so that every run ranks the same candidates)."""
    sets: dict[str, set[str]] = {}
    for item in [*dataset.query, *dataset.test]:
        sets.setdefault(answer_group(item), set()).add(canonical_answer(item))
    return {group: tuple(sorted(answers)) for group, answers in sets.items()}


def _cache_keyword(lm: Any) -> str:
    """The name of the KV-cache argument (``cache`` from transformers 5.24, before that
    ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def candidate_logliks(
    model: Any,
    images: torch.Tensor,
    image_mask: torch.Tensor,
    prefix: list[int],
    candidates: list[list[int]],
    pad_token_id: int,
) -> list[float]:
    """The summed log-likelihood of each candidate's tokens after ``prefix``.

    Args:
        model: the Flamingo model; images, image_mask: (1, T, 3, H, W) and (1, T).
        prefix: the prompt's token ids; candidates: each continuation's token ids (non-empty).
    """
    if not candidates or any(not c for c in candidates):
        raise ValueError("every candidate needs at least one token")
    device = images.device
    lm, keyword = model.lang_model, _cache_keyword(model.lang_model)
    ids = torch.tensor([prefix], device=device)
    longest = max(len(c) for c in candidates)
    rows = torch.tensor([c + [pad_token_id] * (longest - len(c)) for c in candidates],
                        device=device)  # fmt: skip
    real = torch.tensor([[1] * len(c) + [0] * (longest - len(c)) for c in candidates],
                        device=device)  # fmt: skip
    with torch.no_grad():
        media = model.encode_images(images, image_mask, ids)
        with model.context.scope(media, reuse_kv=True):
            out = lm(input_ids=ids, use_cache=True)
            cache = out[keyword]
            first = out.logits[0, -1].float().log_softmax(dim=-1)  # predicts each first token
            cache.batch_repeat_interleave(len(candidates))
            model.context.repeat(len(candidates))
            attention = torch.cat([torch.ones(len(candidates), len(prefix), dtype=real.dtype,
                                              device=device), real], dim=1)  # fmt: skip
            rest = lm(input_ids=rows, attention_mask=attention, use_cache=True, **{keyword: cache})
    logp = rest.logits[:, :-1].float().log_softmax(dim=-1)  # predicts tokens 1..longest-1
    later = logp.gather(-1, rows[:, 1:, None]).squeeze(-1) * real[:, 1:]
    return (first[rows[:, 0]] + later.sum(dim=1)).tolist()


def rank_answers(
    model: Any, tokenizer: Any, answers: tuple[str, ...], images: torch.Tensor,
    image_mask: torch.Tensor, text: str,
) -> dict[str, float]:  # fmt: skip
    """``{candidate: summed log-likelihood}`` of each of ``answers`` after the prompt ``text``."""
    prefix = tokenizer(text).input_ids
    tokens = [tokenizer(f"{a}{EOC}", add_special_tokens=False).input_ids for a in answers]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = candidate_logliks(model, images, image_mask, prefix, tokens, pad)
    return dict(zip(answers, scores, strict=True))
