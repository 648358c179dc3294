"""Analytic training FLOPs of a step: the counting rule of ``benchmarks/gpu_throughput.py``.

Forward 2·P·N per matmul weight P and the N tokens through it (the vision encoder on all its
tokens per image, class token included), 4·n_q·n_k·d per self-attention; backward 4·P·N for
trainable weights and 2·P·N for frozen ones on the gradient path (the LM's, for its input
gradients), twice the forward attention there; nothing backward for the frozen vision encoder.
Approximations: the resampler's weights count every image token (its latents are fewer), and
cross-attention's score products are left out (under 1% at the benchmark's shapes).

A study compares runs at matched compute with it: sparser cross-attention is cheaper per step, a
stricter MMC4 filter shows fewer images per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.model.lm import adapter_for


def matmul_params(module: nn.Module, trainable: bool | None = None) -> int:
    """Parameters of the 2-D weights of ``module`` (all, or only trainable / frozen ones)."""
    return sum(p.numel() for p in module.parameters()
               if p.ndim == 2 and (trainable is None or p.requires_grad == trainable))  # fmt: skip


@dataclass(frozen=True)
class FlopCounter:
    """The model's sizes that the count needs, read once."""

    vision_params: int
    vision_tokens: int  # per image, class token included
    vision_width: int
    vision_depth: int
    resampler_params: int
    lm_params: int  # the LM's matmul weights, cross-attention excluded
    xattn_params: int
    hidden: int
    layers: int

    @classmethod
    def of(cls, model: Any) -> FlopCounter:
        visual = model.vision.visual
        grid = getattr(visual, "grid_size", None)
        tokens = int(grid[0] * grid[1]) + 1 if grid is not None else 0
        depth = sum(1 for m in visual.modules() if type(m).__name__ == "ResidualAttentionBlock")
        xattn = sum(matmul_params(b) for b in model.xattn_blocks().values())
        adapter = adapter_for(model.lang_model)
        return cls(
            vision_params=matmul_params(model.vision), vision_tokens=tokens,
            vision_width=int(model.vision.dim), vision_depth=depth,
            resampler_params=matmul_params(model.resampler),
            lm_params=matmul_params(model.lang_model) - xattn, xattn_params=xattn,
            hidden=int(adapter.hidden_size(model.lang_model)),
            layers=len(adapter.decoder_layers(model.lang_model)),
        )  # fmt: skip

    def step(self, row_tokens: torch.Tensor | list[int], images: int) -> float:
        """FLOPs of a forward and backward pass over rows of these many text tokens (padding
        excluded) with ``images`` real images in all."""
        lengths = [int(n) for n in row_tokens]
        text = sum(lengths)
        vision = 2 * self.vision_params * images * self.vision_tokens
        vision += 4 * self.vision_tokens**2 * self.vision_width * self.vision_depth * images
        resampler = 6 * self.resampler_params * images * self.vision_tokens
        lm = (2 + 2) * self.lm_params * text + (2 + 4) * self.xattn_params * text
        attention = 4 * sum(n * n for n in lengths) * self.hidden * self.layers * (1 + 2)
        return float(vision + resampler + lm + attention)


def step_compute(counter: FlopCounter, parts: list[Any]) -> dict[str, float]:
    """What one step's parts (the whole global batch) cost: ``compute/images`` (real images),
    ``compute/text_tokens`` (tokens not padding) and ``compute/flops``."""
    images = sum(int(part.batch.image_mask.sum()) for part in parts)
    lengths = [int(n) for part in parts for n in part.batch.attention_mask.sum(dim=1).tolist()]
    return {"compute/images": float(images), "compute/text_tokens": float(sum(lengths)),
            "compute/flops": counter.step(lengths, images)}  # fmt: skip


CUMULATIVE = {"compute/images": "compute/images_seen", "compute/text_tokens": "compute/tokens_seen",
              "compute/flops": "compute/flops_seen", "time/step_s": "compute/seconds"}  # fmt: skip


def accumulate(values: dict[str, float], previous: dict[str, float] | None) -> dict[str, float]:
    """The running totals of :data:`CUMULATIVE` after a step with ``values``, continuing those
    of the ``previous`` step's entry (restored from a checkpoint on resume)."""
    before = previous or {}
    return {
        total: before.get(total, 0.0) + values.get(key, 0.0) for key, total in CUMULATIVE.items()
    }
