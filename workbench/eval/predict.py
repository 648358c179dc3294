"""The model's answers to a batch of prompts: beam-search generation (captioning, VQA), class
names ranked by their mean per-token log-likelihood (classification), or a closed answer set
ranked by summed log-likelihood (VQA with ``closed_set``, :mod:`workbench.eval.rank`).

Decoding as the reference does it: beam search (3 beams), the dataset's new-token budget, stop at
``<|endofchunk|>``, only the new tokens decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from workbench.eval.group import Group
from workbench.eval.prompts import postprocess, prompt
from workbench.eval.rank import answer_group, candidates_by_type, rank_answers
from workbench.eval.tasks import Dataset, Item, load_image


def predict(
    model: Any,
    tokenizer: Any,
    processor: Any,
    dataset: Dataset,
    batch: list[Item],
    demos: list[list[Item]],
    shots: int,
    num_beams: int,
    group: Group | None = None,
) -> list[Any]:
    """The answer to each item of ``batch`` after its demonstrations: the generated text, or for
    classification a ``{class name: mean log-likelihood}`` dict.

    Args:
        model: the Flamingo model (DDP's wrapper is looked through).
        demos: each item's demonstrations; at zero ``shots`` their images are left out.
        group: ``synced`` makes every rank run the same number of forward passes (FSDP).
    """
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
    if dataset.closed_set:
        answers = candidates_by_type(dataset)
        return [rank_answers(core, tokenizer, answers[answer_group(it)], images[i : i + 1],
                             mask[i : i + 1], texts[i])
                for i, it in enumerate(batch)]  # fmt: skip
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    input_ids, attention = enc.input_ids.to(device), enc.attention_mask.to(device)
    synced = group is not None and group.synced
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


def _batch_images(
    processor: Any, rows: list[list[Path]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3, H, W) images and (B, T) mask, rows zero-padded to the longest."""
    t = max(max(len(r) for r in rows), 1)
    tensors = [[processor(load_image(p)) for p in row] for row in rows]
    shape = next((x[0].shape for x in tensors if x), (3, 1, 1))
    images = torch.zeros(len(rows), t, *shape)
    mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for i, row in enumerate(tensors):
        for j, tensor in enumerate(row):
            images[i, j], mask[i, j] = tensor, True
    return images.to(device), mask.to(device)


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
