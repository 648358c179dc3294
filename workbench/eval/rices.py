"""RICES: retrieval-based in-context example selection over CLIP image embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from workbench.eval.tasks import Item, load_image


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
        """(N, E) image embeddings of ``items``, computed in batches of ``batch_size``."""
        device = next(self.model.vision.parameters()).device
        chunks = []
        for i in range(0, len(items), batch_size):
            images = torch.stack(
                [self.processor(load_image(it.image)) for it in items[i : i + batch_size]]
            )
            chunks.append(self.model.vision.embed(images.to(device)).cpu())
        return torch.cat(chunks)

    def demos(self, items: Sequence[Item], k: int) -> list[list[Item]]:
        """For each item, its ``k`` most similar query examples, the most similar last."""
        similarity = self.embed(items) @ self.features.T  # (B, Q)
        top = similarity.topk(k, dim=1).indices.flip(1)
        return [[self.query[int(j)] for j in row] for row in top]
