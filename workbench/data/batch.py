"""Examples, padded batches and the loss labels of both sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenIds:
    """The token ids the pipelines need; from the tokenizer the model was built with."""

    media: int  # <image>
    eoc: int  # <|endofchunk|>
    pad: int
    eos: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> TokenIds:
        return cls(
            media=int(tokenizer.convert_tokens_to_ids("<image>")),
            eoc=int(tokenizer.convert_tokens_to_ids("<|endofchunk|>")),
            pad=int(tokenizer.pad_token_id),
            eos=int(tokenizer.eos_token_id),
        )


@dataclass
class Example:
    """One processed sample: its images (n, 3, H, W) and token ids (L,)."""

    images: torch.Tensor
    input_ids: torch.Tensor
    source: str
    key: str = ""


@dataclass
class Batch:
    """A padded batch in the model's input format (see ``Flamingo.forward``)."""

    images: torch.Tensor  # (B, T, 3, H, W)
    image_mask: torch.Tensor  # (B, T) bool, a prefix of each row
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L), IGNORE_INDEX where no loss
    source: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, rank: int, world: int) -> Batch:
        """The rows ``rank::world`` (one rank's share of a global batch)."""
        if world == 1:
            return self
        pick = slice(rank, None, world)
        return Batch(self.images[pick], self.image_mask[pick], self.input_ids[pick],
                     self.attention_mask[pick], self.labels[pick], self.source[pick],
                     self.keys[pick])  # fmt: skip

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Tensors moved to ``device`` (images also cast to ``dtype``)."""
        return Batch(
            self.images.to(device, dtype=dtype, non_blocking=True),
            self.image_mask.to(device, non_blocking=True),
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            self.source,
            self.keys,
        )


def collate(examples: list[Example], ids: TokenIds) -> Batch:
    """Right-pads token ids and stacks images, padding image slots with zeros (masked out)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    length = max(len(e.input_ids) for e in examples)
    slots = max(max(len(e.images) for e in examples), 1)
    image_shape = next((e.images.shape[1:] for e in examples if len(e.images)), (3, 1, 1))
    images = torch.zeros(len(examples), slots, *image_shape)
    image_mask = torch.zeros(len(examples), slots, dtype=torch.bool)
    for row, example in enumerate(examples):
        images[row, : len(example.images)] = example.images
        image_mask[row, : len(example.images)] = True

    def pad(tokens: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(tokens, (0, length - len(tokens)), value=value)

    return Batch(
        images=images,
        image_mask=image_mask,
        input_ids=torch.stack([pad(e.input_ids, ids.pad) for e in examples]),
        attention_mask=torch.stack([pad(torch.ones_like(e.input_ids), 0) for e in examples]),
        labels=torch.stack([pad(example_labels(e, ids), IGNORE_INDEX) for e in examples]),
        source=[e.source for e in examples],
        keys=[e.key for e in examples],
    )


def example_labels(example: Example, ids: TokenIds) -> torch.Tensor:
    """Loss labels of one unpadded example, by its source's rule (the reference's)."""
    tokens = example.input_ids
    labels = tokens.clone()
    is_media = tokens == ids.media
    if example.source == "mmc4":
        # a token is inside an image's chunk when more images than closing <|endofchunk|>s precede
        # it (its own <|endofchunk|> included): text before the first image and the tail after
        # the last <|endofchunk|> get no loss
        is_eoc = (tokens == ids.eoc).long()
        open_chunks = is_media.long().cumsum(0) - (is_eoc.cumsum(0) - is_eoc)
        labels[open_chunks <= 0] = IGNORE_INDEX
    labels[is_media] = IGNORE_INDEX
    # padding is added (and ignored) by collate: an eos that is also the pad keeps its loss
    return labels


def process_images(
    images: list[Any], processor: Any, rng: Any, hflip_prob: float = 0.0
) -> torch.Tensor:
    """PIL images -> (n, 3, H, W) with the model's image processor; all flipped together with
    probability ``hflip_prob`` (the reference's augmentation; it would corrupt left/right)."""
    tensor = torch.stack([processor(image) for image in images])
    if hflip_prob > 0 and rng.random() < hflip_prob:
        tensor = tensor.flip(-1)
    return tensor
