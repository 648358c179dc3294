"""The frozen vision encoder: any open_clip model's ``visual`` tower, returning patch tokens."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

_CONFIG_DIR = resources.files("workbench.model") / "clip_configs"
# Registers the project's own small configs (e.g. ``wb-tiny-vit``) with open_clip's config
# mechanism, so they are built exactly like ``ViT-L-14``.
open_clip.add_model_config(Path(str(_CONFIG_DIR)))


class VisionEncoder(nn.Module):
    """A frozen open_clip vision tower; ``forward`` maps images to patch tokens without autograd.

    Attributes:
        visual: the open_clip ``visual`` module (``output_tokens`` on).
        dim: width of the patch tokens.
    """

    def __init__(self, visual: nn.Module, dim: int) -> None:
        super().__init__()
        if not hasattr(visual, "output_tokens"):
            raise TypeError(
                f"{type(visual).__name__} cannot return patch tokens (no output_tokens); "
                "use a ViT-style open_clip model"
            )
        visual.output_tokens = True  # type: ignore[assignment]
        self.visual = visual.requires_grad_(False).eval()
        self.dim = dim

    def train(self, mode: bool = True) -> VisionEncoder:
        """The encoder is frozen: it stays in eval mode whatever the rest of the model does."""
        del mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (N, 3, H, W) preprocessed images.

        Returns:
            (N, V, D) patch tokens (no class token).
        """
        _, tokens = self.visual(images)
        return tokens


def load_vision(name: str, pretrained: str | None = None) -> tuple[VisionEncoder, Any]:
    """Builds the vision encoder and its image processor from open_clip.

    Args:
        name: an open_clip model name, e.g. ``"ViT-L-14"`` or ``"wb-tiny-vit"``.
        pretrained: a pretrained tag (``"openai"``), a local checkpoint path, or ``None`` for
            random weights.

    Returns:
        (encoder, image processor) where the processor is open_clip's validation transform.
    """
    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {name!r}; known include: "
            f"{', '.join(open_clip.list_models()[:12])}, ..."
        )
    if pretrained is not None and _looks_like_path(pretrained) and not Path(pretrained).exists():
        raise FileNotFoundError(f"vision checkpoint {pretrained} does not exist")
    logger = logging.getLogger()
    level = logger.level
    if pretrained is None:  # open_clip warns on purpose-built random models; we asked for them
        logger.setLevel(logging.ERROR)
    try:
        model, _, processor = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    finally:
        logger.setLevel(level)
    dim = int(config["vision_cfg"]["width"])
    return VisionEncoder(model.visual, dim), processor


def _looks_like_path(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors", ".pth"))
