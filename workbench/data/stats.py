"""What an MMC4 similarity threshold does to a corpus: a table per threshold, and its plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.data.filters import SimilarityThreshold
from workbench.data.formats import BadRecord, Document, iter_tar, parse_document
from workbench.data.mmc4 import interleave
from workbench.data.stream import expand_shards

MAX_IMAGES = 6


def mmc4_threshold_table(
    shards: str | Sequence[str],
    thresholds: Sequence[float],
    *,
    assignment: str = "one_to_one",
    min_image_bytes: int = 0,
    tokenizer: Any = None,
) -> pl.DataFrame:
    """One row per threshold over every document of ``shards``.

    Columns: ``images_kept`` (share of images that survive), ``docs_losing_all_images``,
    ``images_per_doc_mean`` and ``docs_with_{1..6}_images`` (among surviving documents, at most
    6 images each as in training), ``tokens_per_doc_mean`` (interleaved text of surviving
    documents; tokenizer tokens, or words without one), ``documents``, ``bad_records``.
    """
    paths = expand_shards(list(shards) if not isinstance(shards, str) else shards)
    docs, bad = _read_documents(paths)
    if not docs:
        raise ValueError(f"no readable MMC4 document in {paths[:5]}")

    def count_tokens(text: str) -> int:
        return len(tokenizer(text).input_ids) if tokenizer is not None else len(text.split())

    rows = []
    for threshold in thresholds:
        rule = SimilarityThreshold(float(threshold), assignment)  # type: ignore[arg-type]
        row = _threshold_row(docs, rule, min_image_bytes, count_tokens)
        rows.append(
            {"threshold": float(threshold), "documents": len(docs), **row, "bad_records": bad}
        )
    return pl.DataFrame(rows)


def _read_documents(paths: list[str]) -> tuple[list[Document], int]:
    """The parseable documents of ``paths`` and the number of bad records (or shards)."""
    docs, bad = [], 0
    for path in paths:
        try:
            for sample in iter_tar(path):
                try:
                    docs.append(parse_document(sample))
                except BadRecord:
                    bad += 1
        except BadRecord:
            bad += 1
    return docs, bad


def _threshold_row(
    docs: list[Document],
    rule: SimilarityThreshold,
    min_image_bytes: int,
    count_tokens: Callable[[str], int],
) -> dict[str, float]:
    kept_images, total_images, per_doc, tokens = 0, 0, [], []
    for doc in docs:
        usable = [i for i, b in enumerate(doc.images) if b and len(b) >= min_image_bytes]
        pairs = rule(doc.similarity[usable]) if usable else []
        total_images += len(usable)
        kept_images += len(pairs)
        if pairs:
            per_doc.append(min(len(pairs), MAX_IMAGES))
            text = interleave(doc.sentences, sorted(j for _, j in pairs), "")
            tokens.append(count_tokens(text))
    counts = np.bincount(per_doc, minlength=MAX_IMAGES + 1)
    survivors = max(len(per_doc), 1)
    return {
        "images_kept": kept_images / max(total_images, 1),
        "docs_losing_all_images": 1 - len(per_doc) / len(docs),
        "images_per_doc_mean": float(np.mean(per_doc)) if per_doc else 0.0,
        **{f"docs_with_{k}_images": counts[k] / survivors for k in range(1, MAX_IMAGES + 1)},
        "tokens_per_doc_mean": float(np.mean(tokens)) if tokens else 0.0,
    }


def plot_threshold_table(table: pl.DataFrame, path: str | Path) -> Path:
    """A PNG: documents losing all images and images kept vs threshold, and the distribution of
    images per surviving document."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = table["threshold"].to_numpy()
    left.plot(x, table["docs_losing_all_images"], marker="o", label="documents losing all images")
    left.plot(x, table["images_kept"], marker="s", label="images kept")
    left.set_xlabel("similarity threshold")
    left.set_ylabel("share")
    left.set_ylim(0, 1)
    left.legend()
    bottom = np.zeros(len(table))
    for k in range(1, MAX_IMAGES + 1):
        share = table[f"docs_with_{k}_images"].to_numpy()
        right.bar([f"{t:.2f}" for t in x], share, bottom=bottom, label=f"{k} image{'s' * (k > 1)}")
        bottom += share
    right.set_xlabel("similarity threshold")
    right.set_ylabel("share of surviving documents")
    right.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
