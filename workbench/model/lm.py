"""Language-model adapters and the decoder-layer wrapper that inserts cross-attention.

An adapter is registered per ``config.model_type`` (an exact key, never a class-name substring)
and names where a family keeps its decoder layers. Embeddings are reached through the standard
``get_input_embeddings`` / ``get_output_embeddings`` API every family implements.

Cross-attention is added by replacing entries of the decoder-layer list with
:class:`FlamingoDecoderLayer`, which owns the original layer and (optionally) a gated
cross-attention block. Visual tokens reach the wrappers through a :class:`MediaContext` that the
Flamingo model fills inside a ``with context.scope(...)`` block and that always clears on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from workbench.model.xattn import GatedCrossAttentionBlock, text_time
from workbench.registry import Registry


@dataclass(frozen=True)
class LMAdapter:
    """Where a causal-LM family keeps its decoder layers (a dotted attribute path), and the name
    of its output head in released checkpoints when transformers now calls it otherwise."""

    model_type: str
    layers_path: str
    released_head: str | None = None

    def decoder_layers(self, lm: nn.Module) -> nn.ModuleList:
        module: Any = lm
        for name in self.layers_path.split("."):
            module = getattr(module, name)
        if not isinstance(module, nn.ModuleList):
            raise TypeError(f"{self.model_type}: {self.layers_path} is not an nn.ModuleList")
        return module

    def hidden_size(self, lm: PreTrainedModel) -> int:
        return int(lm.config.hidden_size)


LM_ADAPTERS: Registry[LMAdapter] = Registry("lm")

for _adapter in (
    LMAdapter("llama", "model.layers"),
    LMAdapter("opt", "model.decoder.layers"),
    LMAdapter("gpt_neox", "gpt_neox.layers", released_head="embed_out"),  # lm_head since 5.0
    LMAdapter("mpt", "transformer.blocks"),
    LMAdapter("gpt2", "transformer.h"),
    LMAdapter("qwen2", "model.layers"),
):
    LM_ADAPTERS.add(_adapter.model_type, _adapter)


def adapter_for(lm: PreTrainedModel) -> LMAdapter:
    """The registered adapter for ``lm.config.model_type`` (a miss lists the supported types)."""
    model_type = getattr(getattr(lm, "config", None), "model_type", None)
    if model_type is None:
        raise TypeError(f"{type(lm).__name__} has no config.model_type; is it a transformers LM?")
    return LM_ADAPTERS.get(model_type)


class MediaContext:
    """Visual tokens and text times visible to the cross-attention layers during one call.

    Only :meth:`scope` sets it, and it clears on exit even when the forward raises, so no stale
    image features survive a call (the reference keeps them on every layer until a flag clears).
    """

    def __init__(self) -> None:
        self.media: torch.Tensor | None = None  # (B, T_img, n, D_v)
        self.times: torch.Tensor | None = None  # (B, L) of the tokens in the current LM call
        self.seen: torch.Tensor | None = None  # (B,) images seen before the current LM call
        # each cross-attention's visual keys and values, kept through a generation's steps
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.active = False

    @contextmanager
    def scope(self, media: torch.Tensor, reuse_kv: bool = False) -> Iterator[MediaContext]:
        """Media visible to the LM calls inside; ``reuse_kv`` (generation, no gradients): each
        cross-attention projects the visual tokens to keys and values once, not per step."""
        if self.active:
            raise RuntimeError("a media scope is already open (nested Flamingo calls?)")
        self.media, self.seen, self.active = media, None, True
        self.kv = {} if reuse_kv else None
        try:
            yield self
        finally:
            self.media = self.times = self.seen = self.kv = None
            self.active = False

    def repeat(self, repeats: int) -> None:
        """Every row ``repeats`` times, consecutively (the images seen so far and the projected
        keys and values too): for continuing one cached prompt with several continuations."""
        assert self.media is not None and self.seen is not None
        self.media = self.media.repeat_interleave(repeats, dim=0)
        self.seen = self.seen.repeat_interleave(repeats, dim=0)
        if self.kv is not None:
            self.kv = {k: (a.repeat_interleave(repeats, 0), b.repeat_interleave(repeats, 0))
                       for k, (a, b) in self.kv.items()}  # fmt: skip

    def advance(self, media_locations: torch.Tensor, continues: bool) -> None:
        """Sets text times for the next LM call; called once per call with its input ids.

        Args:
            continues: the call's tokens follow those of the previous call (KV-cached decoding),
                so the images seen so far count; otherwise the call holds the whole sequence.
            media_locations: (B', L) bool; B' may be a multiple of the media batch (beam search
                repeats every sample ``num_beams`` times, consecutively).
        """
        assert self.media is not None
        if media_locations.shape[0] != self.media.shape[0]:
            repeats, rest = divmod(media_locations.shape[0], self.media.shape[0])
            if rest:
                raise ValueError(
                    f"batch of {media_locations.shape[0]} token rows for "
                    f"{self.media.shape[0]} image rows"
                )
            self.media = self.media.repeat_interleave(repeats, dim=0)
            if self.kv is not None:
                self.kv = {}  # projected from the unrepeated media
        if continues and (self.seen is None or self.seen.shape[0] != media_locations.shape[0]):
            raise ValueError("a cached LM call without a matching previous call in this scope")
        times = text_time(media_locations, self.seen if continues else None)
        self.times = times
        self.seen = times[:, -1]


class FlamingoDecoderLayer(nn.Module):
    """A decoder layer preceded by an optional gated cross-attention block.

    Attributes the LM reads from its layers (e.g. ``attention_type``) are forwarded to the wrapped
    layer, so the LM's own forward needs no change.
    """

    def __init__(
        self, layer: nn.Module, xattn: GatedCrossAttentionBlock | None, context: MediaContext
    ) -> None:
        super().__init__()
        self.layer = layer
        self.xattn = xattn
        # A plain attribute, not a submodule: one context is shared by every layer.
        object.__setattr__(self, "context", context)
        self.checkpointing = False  # recompute this layer in backward (activation checkpointing)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["layer"], name)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        media = times = kv = None
        if self.xattn is not None:
            ctx = self.context
            kv = ctx.kv
            if not ctx.active or ctx.media is None or ctx.times is None:
                raise RuntimeError(
                    "cross-attention layer called outside a media scope: call the Flamingo "
                    "model (forward/generate/score), not its language model directly"
                )
            media, times = ctx.media.to(hidden_states.dtype), ctx.times
        if self.checkpointing and torch.is_grad_enabled():
            # media and times are arguments, so the recomputation in backward (after the media
            # scope has closed) sees the same ones
            return checkpoint(
                self._forward, hidden_states, media, times, *args, use_reentrant=False, **kwargs
            )
        return self._forward(hidden_states, media, times, *args, kv=kv, **kwargs)

    def _forward(
        self,
        hidden_states: torch.Tensor,
        media: torch.Tensor | None,
        times: torch.Tensor | None,
        *args: Any,
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> Any:
        if self.xattn is not None:
            assert media is not None and times is not None
            hidden_states = self.xattn(hidden_states, media, times, kv)
        return self.layer(hidden_states, *args, **kwargs)
