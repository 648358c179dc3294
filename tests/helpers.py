"""Small builders shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.model import Flamingo, create_model_and_transforms

IMAGE_SIZE = 32  # wb-tiny-vit


def build(
    lm_dir: Path, seed: int = 0, open_gates: bool = False, **options
) -> tuple[Flamingo, object]:
    """A tiny model (eval mode); ``open_gates`` sets every gate to a non-zero value."""
    torch.manual_seed(seed)
    model, _, tokenizer = create_model_and_transforms("wb-tiny-vit", str(lm_dir), **options)
    if open_gates:
        with torch.no_grad():
            for block in model.xattn_blocks().values():
                block.attn_gate.fill_(0.8)
                block.ff_gate.fill_(0.6)
    return model.eval(), tokenizer


def images(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        b, t, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed)
    )


def encode(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return enc.input_ids, enc.attention_mask
