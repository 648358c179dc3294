"""Held-out loss on fixed validation sets: the same items for every run of a study.

A study's variants change what they train on (the mixture, the MMC4 filter), so their training
losses are not comparable. The validation sets are written once with the world (``validation/
laion/*.tar`` and ``validation/mmc4/*.tar``) and read the same way by every run, whatever its
spec: one pass, no shuffling, per-record draws from seed 0 and the MMC4 filter fixed at the
reference's (similarity threshold 0.24, whatever the run's own filter), so every variant and
every seed is scored on exactly the same documents. The rest of the processing (token budgets,
image counts, image transform) is the run's.

Each evaluation gives ``val/loss/<source>`` (the mean next-token loss over every labelled token
of the set) and one row per item (its summed loss and its labelled tokens), which the study
analysis uses as a crossed source of variance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
import torch

from workbench.data.batch import IGNORE_INDEX, Batch, TokenIds
from workbench.data.loader import MixtureDataset
from workbench.data.mixture import LaionOnly, MMC4Only
from workbench.data.sources import SOURCES
from workbench.spec import Choice, DataSpec, SpecError

#: The MMC4 filter of every validation set, whatever the run's (the reference's default).
VALIDATION_THRESHOLD = 0.24
SINGLE = {"laion": LaionOnly, "mmc4": MMC4Only}


def validation_shards(folder: Path) -> dict[str, list[str]]:
    """The shards of each source under ``folder`` (``<source>/*.tar``); raises SpecError when
    the folder holds none."""
    shards = {name: sorted(str(p) for p in (folder / name).glob("*.tar")) for name in SINGLE}
    shards = {name: paths for name, paths in shards.items() if paths}
    if not shards:
        raise SpecError(f"eval.validation: {folder} holds no laion/*.tar or mmc4/*.tar shards")
    return shards


def read_validation(
    data: DataSpec, folder: Path, tokenizer: Any, processor: Any, batch_size: int = 16
) -> dict[str, list[Batch]]:
    """Every validation item of each source, in batches, read the same way for every spec."""
    same_filter = Choice.of("mmc4_filter", "similarity_threshold", threshold=VALIDATION_THRESHOLD)
    fixed = dataclasses.replace(data, mmc4_filter=same_filter)
    ids = TokenIds.from_tokenizer(tokenizer)
    out: dict[str, list[Batch]] = {}
    for name, shards in validation_shards(folder).items():
        source = SOURCES[name].build(fixed, tokenizer, processor)
        steps = MixtureDataset(SINGLE[name](batch_size=batch_size), {name: source},
                               {name: shards}, ids, seed=0, resampled=False)  # fmt: skip
        out[name] = [part.batch for step in steps for part in step.parts]
        if not out[name]:
            raise SpecError(f"eval.validation: no valid {name} item in {folder / name}")
    return out


def validation_loss(
    model: Any, batches: dict[str, list[Batch]], device: torch.device
) -> tuple[dict[str, float], pl.DataFrame]:
    """(``val/loss/<source>`` metrics, one row per item: source, key, loss_sum, tokens)."""
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    try:
        with torch.no_grad():
            for name, source_batches in batches.items():
                total, tokens = 0.0, 0
                for batch in source_batches:
                    batch = batch.to(device)
                    logits = model(batch.images, batch.image_mask, batch.input_ids,
                                   batch.attention_mask).logits  # fmt: skip
                    sums, counts = per_row_loss(logits, batch.labels)
                    for key, s, c in zip(batch.keys, sums.tolist(), counts.tolist(), strict=True):
                        rows.append({"source": name, "key": key, "loss_sum": s, "tokens": c})
                    total += float(sums.sum())
                    tokens += int(counts.sum())
                metrics[f"val/loss/{name}"] = total / max(tokens, 1)
    finally:
        model.train(was_training)
    return metrics, pl.DataFrame(
        rows, schema={"source": pl.Utf8, "key": pl.Utf8, "loss_sum": pl.Float64, "tokens": pl.Int64}
    )


def per_row_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) summed next-token cross-entropy (fp32) and (B,) labelled tokens of each row."""
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
        reduction="none",
    )  # fmt: skip
    return losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)
