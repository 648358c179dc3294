"""The ``special_embeddings`` component: whether the ``<image>`` / ``<|endofchunk|>`` rows learn.

``trainable`` decouples the rows of the special tokens from the frozen vocabulary: the LM's
embedding matrix stays frozen and a small trainable table (one row per special token) overrides
those rows, on the input side and on the output side. A tied LM shares one table between both
sides (as its tied matrix would); an untied LM gets a second table for its output rows. Every other
row provably never changes, and the optimizer holds two small tables instead of the whole vocabulary
(the reference trains the full input matrix and leaves untied output rows frozen).

``frozen`` trains none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from workbench.registry import Registry


class SpecialTokenEmbedding(nn.Module):
    """Input embedding: the frozen base table, with the special rows read from ``special``."""

    special_index: torch.Tensor  # (V,) row of each token in ``special``, -1 for ordinary ones
    special_ids: torch.Tensor  # (S,)

    def __init__(self, base: nn.Embedding, special_ids: Sequence[int], special: nn.Parameter):
        super().__init__()
        self.base = base
        self.special = special  # (S, D)
        lookup = torch.full((base.num_embeddings,), -1, dtype=torch.long)
        lookup[torch.as_tensor(list(special_ids))] = torch.arange(len(special_ids))
        self.register_buffer("special_index", lookup, persistent=False)
        self.register_buffer("special_ids", torch.as_tensor(list(special_ids)), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """The effective (V, D) matrix (for code that reads ``get_input_embeddings().weight``)."""
        return self.base.weight.index_copy(0, self.special_ids, self.special.to(self.base.weight))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.base(input_ids)  # (B, L, D); also applies any padding_idx / scale of the base
        idx = self.special_index[input_ids]  # (B, L), -1 for ordinary tokens
        rows = F.embedding(idx.clamp(min=0), self.special).to(out.dtype)
        return torch.where((idx >= 0)[..., None], rows, out)


class SpecialTokenHead(nn.Module):
    """Output projection: the frozen head, with the special tokens' logits from ``special``."""

    special_ids: torch.Tensor  # (S,)

    def __init__(self, base: nn.Linear, special_ids: Sequence[int], special: nn.Parameter):
        super().__init__()
        self.base = base
        self.special = special  # (S, D)
        self.register_buffer("special_ids", torch.as_tensor(list(special_ids)), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight.index_copy(0, self.special_ids, self.special.to(self.base.weight))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base(hidden)  # (B, L, V)
        special = F.linear(hidden, self.special.to(hidden.dtype))  # (B, L, S)
        if self.base.bias is not None:
            special = special + self.base.bias[self.special_ids]
        return logits.index_copy(-1, self.special_ids, special.to(logits.dtype))


class SpecialEmbeddings(Protocol):
    """A ``special_embeddings`` component: its options, and how it changes a frozen LM."""

    def apply(self, lm: PreTrainedModel, special_ids: Sequence[int]) -> None: ...


SPECIAL_EMBEDDINGS: Registry[type[SpecialEmbeddings]] = Registry("special_embeddings")


def _is_tied(lm: PreTrainedModel) -> bool:
    head = lm.get_output_embeddings()
    return head is not None and head.weight is lm.get_input_embeddings().weight


INITS = ("mean", "random", "copy")


def initial_rows(table: torch.Tensor, ids: torch.Tensor, init: str | None, seed: int = 0,
                 copy_of: int | None = None) -> torch.Tensor:  # fmt: skip
    """The starting values of the special rows of ``table`` (V, D): as the LM's resize left
    them (None), the mean of the other rows, random (normal, the other rows' per-dimension
    standard deviation around their mean), or a copy of row ``copy_of`` (the end-of-text token)."""
    rows = table.detach()[ids].clone()
    if init in ("mean", "random"):  # only then read the vocabulary (a meta-device LM has none)
        others = torch.ones(table.shape[0], dtype=torch.bool)
        others[ids] = False
        vocabulary = table.detach()[others].float()
    if init == "mean":
        rows[:] = vocabulary.mean(dim=0).to(rows.dtype)
    elif init == "random":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(rows.shape, generator=generator)
        rows[:] = (vocabulary.mean(0) + noise * vocabulary.std(0)).to(rows.dtype)
    elif init == "copy":
        if copy_of is None:
            raise ValueError("init='copy' needs a token to copy (the LM has no end-of-text token)")
        rows[:] = table.detach()[copy_of]
    elif init is not None:
        raise ValueError(f"special_embeddings init must be one of {INITS} or unset, got {init!r}")
    return rows


@SPECIAL_EMBEDDINGS.register("trainable")
@dataclass(frozen=True)
class Trainable:
    """Trains only the special rows: on the input side, and on the output side too unless
    ``output`` is False (then the LM's head keeps its resized rows, as the reference's does).

    Options left unset keep earlier runs' configuration ids: ``output`` (None: True), ``init``
    (None: as the LM's resize left the rows; ``mean``, ``random`` or ``copy`` of the end-of-text
    row) and ``lr_scale`` (None: 1; the new rows' learning rate over the run's).
    """

    output: bool | None = None
    init: str | None = None
    lr_scale: float | None = None

    def apply(self, lm: PreTrainedModel, special_ids: Sequence[int]) -> None:
        embed, head = lm.get_input_embeddings(), lm.get_output_embeddings()
        if not isinstance(embed, nn.Embedding):
            raise TypeError(f"expected an nn.Embedding input table, got {type(embed).__name__}")
        if self.lr_scale is not None and not self.lr_scale > 0:
            raise ValueError(f"special_embeddings lr_scale must be > 0, got {self.lr_scale}")
        ids = torch.as_tensor(list(special_ids))
        tied, eos = _is_tied(lm), lm.config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        input_rows = nn.Parameter(initial_rows(embed.weight, ids, self.init, copy_of=eos))
        lm.set_input_embeddings(SpecialTokenEmbedding(embed, special_ids, input_rows))
        if self.output is False and not tied:
            return
        if isinstance(head, nn.Linear):
            start = head.weight.detach()[ids].clone() if self.init is None else initial_rows(
                head.weight, ids, self.init, seed=1, copy_of=eos)  # fmt: skip
            output_rows = input_rows if tied else nn.Parameter(start)
            lm.set_output_embeddings(SpecialTokenHead(head, special_ids, output_rows))
        elif head is not None:
            raise TypeError(f"expected an nn.Linear output head, got {type(head).__name__}")


@SPECIAL_EMBEDDINGS.register("frozen")
@dataclass(frozen=True)
class Frozen:
    """Nothing in the LM's embeddings trains (the reference's ``--freeze_lm_embeddings``)."""

    def apply(self, lm: PreTrainedModel, special_ids: Sequence[int]) -> None:
        del lm, special_ids  # the LM is frozen already
