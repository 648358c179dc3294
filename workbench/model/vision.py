"""The frozen vision encoder: any open_clip model's ``visual`` tower, returning patch tokens."""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from workbench.model.features import FeatureCache, encode_with_cache

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
        self.cache: FeatureCache | None = None  # see workbench.model.features

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
            (N, V, D) patch tokens (no class token); read from :attr:`cache` where it has them.
        """
        if self.cache is not None:
            return encode_with_cache(self.cache, self._encode, images)
        return self._encode(images)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        _, tokens = self.visual(images)
        return tokens

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, E) unit-norm CLIP image embeddings (what RICES compares)."""
        pooled, _ = self.visual(images)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)


def load_vision(name: str, pretrained: str | None = None) -> tuple[VisionEncoder, Any]:
    """Builds the vision encoder and its image processor from open_clip.

    Args:
        name: an open_clip model name, e.g. ``"ViT-L-14"`` or ``"wb-tiny-vit"``, or the path of
            an open_clip config JSON (registered with open_clip under its file stem).
        pretrained: a pretrained tag (``"openai"``), a local checkpoint path, or ``None`` for
            random weights.

    Returns:
        (encoder, image processor) where the processor is open_clip's validation transform.
    """
    if name.endswith(".json"):
        if not Path(name).is_file():
            raise FileNotFoundError(f"open_clip config {name} does not exist")
        open_clip.add_model_config(Path(name))
        name = Path(name).stem
    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(
            f"unknown open_clip model {name!r}; known include: "
            f"{', '.join(open_clip.list_models()[:12])}, ..."
        )
    if pretrained is not None and _looks_like_path(pretrained) and not Path(pretrained).exists():
        raise FileNotFoundError(f"vision checkpoint {pretrained} does not exist")
    if pretrained is not None and not _looks_like_path(pretrained):
        pretrained = cached_open_clip_weights(name, pretrained)
    with random_init_asked() if pretrained is None else contextlib.nullcontext():
        model, _, processor = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    dim = int(config["vision_cfg"]["width"])
    return VisionEncoder(model.visual, dim), processor


@contextlib.contextmanager
def random_init_asked() -> Iterator[None]:
    """open_clip warns ("No pretrained weights loaded") on every model built without weights,
    through the root logger; inside this block we asked for random weights on purpose."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _looks_like_path(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors", ".pth"))


def cached_open_clip_weights(name: str, tag: str) -> str:
    """The local file of open_clip's pretrained ``tag`` for ``name``, downloading it only when
    the Hugging Face hub is reachable; offline, a missing file fails at once with what to fetch.
    """
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = ", ".join(t for m, t in open_clip.list_pretrained() if m == name) or "none"
        raise ValueError(f"open_clip has no pretrained tag {tag!r} for {name}; known: {tags}")
    hub_id = cfg.get("hf_hub", "").rstrip("/")
    if not hub_id:
        raise ValueError(
            f"{name}/{tag} downloads from {cfg.get('url')}: fetch that file yourself and pass "
            "its path as the pretrained checkpoint"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    filenames = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    for filename in filenames:
        try:
            return hf_hub_download(hub_id, filename, local_files_only=True)
        except LocalEntryNotFoundError:
            continue
    if not offline():
        for filename in filenames:
            try:
                return hf_hub_download(hub_id, filename)
            except Exception:  # try the other file name, then report
                continue
    raise FileNotFoundError(
        f"the weights of open_clip {name}/{tag} are not in the local cache and cannot be "
        f"downloaded here. On a connected machine run `huggingface-cli download {hub_id}` and "
        "copy the cache (~/.cache/huggingface/hub) here, or pass the checkpoint file's path "
        "as the pretrained argument"
    )


def offline() -> bool:
    """True when the Hugging Face hub must not be contacted: ``HF_HUB_OFFLINE=1``, or its host
    does not resolve or answer within 3 s (probed once per process, so a machine without a
    network fails at once instead of after minutes of download retries)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or _hub_unreachable(constants.ENDPOINT)


@functools.cache
def _hub_unreachable(endpoint: str) -> bool:
    host = urllib.parse.urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return True
    return False
