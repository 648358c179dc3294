"""The Flamingo model: frozen vision encoder -> Perceiver resampler -> gated cross-attention
inserted before decoder layers of a frozen causal LM.

Batches are interleaved: ``images`` (B, T, 3, H, W) with ``image_mask`` (B, T) marking real images
(a prefix of each row; padded slots are never encoded), and the k-th ``<image>`` token of a row
refers to that row's k-th image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from workbench.data.batch import IGNORE_INDEX
from workbench.model.embeddings import SPECIAL_EMBEDDINGS
from workbench.model.lm import FlamingoDecoderLayer, MediaContext, adapter_for
from workbench.model.resampler import RESAMPLERS
from workbench.model.vision import VisionEncoder
from workbench.model.xattn import GatedCrossAttentionBlock, xattn_layer_indices


@dataclass(frozen=True)
class FlamingoConfig:
    """Everything the model needs besides its two backbones.

    Attributes:
        media_token_id: id of ``<image>``.
        eoc_token_id: id of ``<|endofchunk|>`` (generation stops there).
        pad_token_id: id of the padding token.
        xattn_every: a cross-attention block before decoder layer i when (i + 1) % n == 0.
        only_attend_immediate: text sees only its latest image (else every earlier image).
        special_embeddings: a registered ``special_embeddings`` component by name, or its
            options (``RunSpec``'s ``model.special_embeddings.options``).
        xattn_heads, xattn_dim_head, xattn_ff_mult: cross-attention block sizes.
        resampler, resampler_options: a registered resampler and its options (None: defaults).
    """

    media_token_id: int
    eoc_token_id: int
    pad_token_id: int
    xattn_every: int = 1
    only_attend_immediate: bool = True
    special_embeddings: Any = "trainable"
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: int = 4
    resampler: str = "perceiver"
    resampler_options: Any = None


class FlamingoOutput(NamedTuple):
    loss: torch.Tensor | None  # scalar mean cross-entropy over labelled tokens
    logits: torch.Tensor  # (B, L, V)


class Flamingo(nn.Module):
    """Flamingo over any registered LM family; only the resampler, the cross-attention blocks
    and (for ``trainable`` special embeddings) the special-token rows require gradients."""

    def __init__(self, vision: VisionEncoder, lang_model: PreTrainedModel, config: FlamingoConfig):
        super().__init__()
        self.config = config
        self.vision = vision
        resampler = RESAMPLERS.get(config.resampler)
        options = config.resampler_options or resampler.options_type()  # type: ignore[attr-defined]
        self.resampler = resampler(vision.dim, options)
        self.num_latents: int = options.num_latents  # visual tokens per image
        self.lang_model = lang_model.requires_grad_(False)
        special = config.special_embeddings
        if isinstance(special, str):
            special = SPECIAL_EMBEDDINGS.get(special)()
        special.apply(lang_model, self.special_token_ids)

        adapter = adapter_for(lang_model)
        layers = adapter.decoder_layers(lang_model)
        with_xattn = set(xattn_layer_indices(len(layers), config.xattn_every))
        self.context = MediaContext()
        for i, layer in enumerate(layers):
            xattn = (
                GatedCrossAttentionBlock(
                    adapter.hidden_size(lang_model),
                    vision.dim,
                    heads=config.xattn_heads,
                    dim_head=config.xattn_dim_head,
                    ff_mult=config.xattn_ff_mult,
                    only_immediate=config.only_attend_immediate,
                )
                if i in with_xattn
                else None
            )
            layers[i] = FlamingoDecoderLayer(layer, xattn, self.context)
        # Every LM call inside a media scope (our forward, or each step of HF generate) passes
        # its input ids here first, which sets the text times the cross-attention layers read.
        lang_model.register_forward_pre_hook(self._set_text_times, with_kwargs=True)

    @property
    def special_token_ids(self) -> list[int]:
        return [self.config.media_token_id, self.config.eoc_token_id]

    def xattn_blocks(self) -> dict[int, GatedCrossAttentionBlock]:
        """Cross-attention blocks by the index of the decoder layer they precede."""
        layers = adapter_for(self.lang_model).decoder_layers(self.lang_model)
        return {
            i: layer.xattn
            for i, layer in enumerate(layers)
            if isinstance(layer, FlamingoDecoderLayer) and layer.xattn is not None
        }

    def _set_text_times(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        del module
        if not self.context.active:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise ValueError(
                "Flamingo needs input_ids (not inputs_embeds) to locate <image> tokens"
            )
        # transformers < 5.24 names the KV cache ``past_key_values``, later versions ``cache``
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        continues = past is not None and past.get_seq_length() > 0  # a KV-cached decoding step
        self.context.advance(input_ids == self.config.media_token_id, continues)

    def encode_images(
        self, images: torch.Tensor, image_mask: torch.Tensor | None, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """Checks an interleaved batch and returns its visual tokens.

        Args:
            images: (B, T, 3, H, W).
            image_mask: (B, T) bool, True for real images (a prefix of each row); None = all real.
            input_ids: (B, L); each row may hold at most as many ``<image>`` tokens as images.

        Returns:
            (B, T', n, D) visual tokens, T' = the most real images in a row (at least 1, zeros
            where a row has fewer; those slots are never attended).
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, T, 3, H, W), got {tuple(images.shape)}")
        if input_ids.ndim != 2 or input_ids.shape[0] != images.shape[0]:
            raise ValueError(
                f"input_ids must be (B, L) with B={images.shape[0]} like images, "
                f"got {tuple(input_ids.shape)}"
            )
        b, t = images.shape[:2]
        if image_mask is None:
            image_mask = torch.ones(b, t, dtype=torch.bool, device=images.device)
        if image_mask.shape != (b, t):
            raise ValueError(f"image_mask must be (B, T)=({b}, {t}), got {tuple(image_mask.shape)}")
        image_mask = image_mask.bool()
        if t > 1 and (image_mask[:, 1:] & ~image_mask[:, :-1]).any():
            raise ValueError("image_mask must mark a prefix of each row (real images first)")
        counts = image_mask.sum(dim=1)
        tokens = (input_ids == self.config.media_token_id).sum(dim=1)
        if (tokens > counts).any():
            row = int((tokens > counts).nonzero()[0, 0])
            raise ValueError(
                f"row {row} has {int(tokens[row])} <image> tokens but {int(counts[row])} images"
            )

        slots = max(int(counts.max()) if b else 0, 1)
        n, dim = self.num_latents, self.vision.dim
        real = images[image_mask]  # (N, 3, H, W), padded slots dropped before encoding
        # N may be 0: the resampler still runs, so that every trainable parameter is in the
        # graph on every rank (DDP needs no find_unused_parameters for text-only batches)
        patches = self.vision(real) if len(real) else images.new_zeros(0, 1, dim)  # (N, V, D)
        latents = self.resampler(patches)  # (N, n, D)
        media = latents.new_zeros(b, slots, n, dim)
        slot_mask = F.pad(image_mask, (0, max(slots - t, 0)))[:, :slots]  # (B, T') even if T=0
        return media.index_put((slot_mask,), latents)

    def forward(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> FlamingoOutput:
        """
        Args:
            images: (B, T, 3, H, W); image_mask: (B, T); input_ids, attention_mask: (B, L).
            labels: (B, L) targets, -100 where ignored; shifted inside.

        Returns:
            (loss or None, logits (B, L, V)).
        """
        media = self.encode_images(images, image_mask, input_ids)
        with self.context.scope(media):
            out = self.lang_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            )
        loss = None if labels is None else causal_lm_loss(out.logits, labels)
        return FlamingoOutput(loss, out.logits)

    @torch.no_grad()
    def generate(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 20,
        num_beams: int = 1,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Greedy or beam-search continuation with the LM's KV cache, images encoded once.

        Stops at ``<|endofchunk|>``; ``<image>`` is never generated (there is no image for it).
        Extra keyword arguments go to ``transformers``' ``generate``.

        Returns:
            (B, L + new) token ids: the prompt followed by the generated tokens.
        """
        if kwargs.get("cache_implementation") == "static" and torch.is_autocast_enabled(
            input_ids.device.type
        ):  # RoPE leaves keys fp32 and values bf16; a static cache holds one dtype
            raise ValueError("a static KV cache cannot generate under autocast: use the default")
        media = self.encode_images(images, image_mask, input_ids)
        kwargs.setdefault("eos_token_id", self.config.eoc_token_id)
        kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("suppress_tokens", [self.config.media_token_id])
        with self.context.scope(media, reuse_kv=True):
            return self.lang_model.generate(  # type: ignore[operator]
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                **kwargs,
            )

    def score(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-token log-likelihoods: out[b, t] = log p(input_ids[b, t+1] | input_ids[b, :t+1]).

        Returns:
            (B, L-1) float32, 0 where ``attention_mask`` marks the predicted token as padding.
        """
        logits = self(images, image_mask, input_ids, attention_mask).logits
        logp = logits[:, :-1].float().log_softmax(dim=-1)
        out = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        if attention_mask is not None:
            out = out * attention_mask[:, 1:].to(out.dtype)
        return out


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions (0 when none is labelled)."""
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must be (B, L)={tuple(logits.shape[:2])}, got {tuple(labels.shape)}"
        )
    labelled = (labels[:, 1:] != IGNORE_INDEX).sum()
    return token_loss_sum(logits, labels) / labelled.clamp(min=1)


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions, in fp32 (the training loop
    divides it by the labelled tokens of the whole global batch)."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
