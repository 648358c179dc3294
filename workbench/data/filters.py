"""The ``mmc4_filter`` component: which images of an MMC4 document survive, next to which sentence.

A filter maps a document's (images x sentences) similarity matrix to the kept
``(image, sentence)`` pairs. A new rule (e.g. top-k per document) is one registered class with
an options dataclass and ``__call__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from workbench.registry import Registry


class MMC4Filter(Protocol):
    def __call__(self, similarity: np.ndarray) -> list[tuple[int, int]]:
        """Kept ``(image index, sentence index)`` pairs of a (images, sentences) matrix."""
        ...


MMC4_FILTERS: Registry[type[MMC4Filter]] = Registry("mmc4_filter")


def assign(similarity: np.ndarray, rule: str) -> list[tuple[int, int]]:
    """Image -> sentence assignment.

    ``one_to_one``: maximum-similarity matching (``linear_sum_assignment``), the reference
    repository's rule; images beyond the number of sentences stay unassigned.
    ``best_sentence``: each image takes its most similar sentence (the 2.0.1 wheel's rule; two
    images may share one sentence).
    """
    if similarity.size == 0:
        return []
    if rule == "one_to_one":
        rows, cols = linear_sum_assignment(-similarity)
        return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]
    if rule == "best_sentence":
        return [(i, int(j)) for i, j in enumerate(similarity.argmax(axis=1))]
    raise ValueError(f"unknown assignment rule {rule!r}; use 'one_to_one' or 'best_sentence'")


@MMC4_FILTERS.register("similarity_threshold")
@dataclass(frozen=True)
class SimilarityThreshold:
    """Assign images to sentences, then drop every image whose pair scores below ``threshold``
    (the sentence stays in the text, without its image). The paper's value is 0.24."""

    threshold: float = 0.24
    assignment: Literal["one_to_one", "best_sentence"] = "one_to_one"

    def __call__(self, similarity: np.ndarray) -> list[tuple[int, int]]:
        pairs = assign(similarity, self.assignment)
        return [(i, j) for i, j in pairs if similarity[i, j] >= self.threshold]


@MMC4_FILTERS.register("top_k")
@dataclass(frozen=True)
class TopK:
    """Keep the ``k`` best-matching assigned images of each document, if above ``threshold``."""

    k: int = 2
    threshold: float = 0.0
    assignment: Literal["one_to_one", "best_sentence"] = "one_to_one"

    def __call__(self, similarity: np.ndarray) -> list[tuple[int, int]]:
        pairs = [
            (i, j)
            for i, j in assign(similarity, self.assignment)
            if similarity[i, j] >= self.threshold
        ]
        return sorted(pairs, key=lambda p: -similarity[p])[: self.k]
