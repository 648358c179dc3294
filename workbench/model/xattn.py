"""Masked cross-attention from text to visual tokens, and the tanh-gated block around it.

Masking (as in the reference): the i-th text token has a "text time" equal to the number of
``<image>`` tokens at or before it. With ``only_immediate`` it attends to the visual tokens of image
number ``text_time`` only; otherwise to every image ``<= text_time``. A token with text time 0 (no
image yet) gets exactly zero from the attention branch, in both modes. (The reference's
all-previous mode lets such tokens attend uniformly to every image, future ones included; we do
not.)
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.model.resampler import FeedForward, attend, merge_heads, split_heads


def text_time(media_locations: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Number of ``<image>`` tokens at or before each position.

    Args:
        media_locations: (B, L) bool, True at ``<image>`` tokens.
        offset: (B,) images already seen before this chunk of tokens (KV-cached decoding).

    Returns:
        (B, L) long.
    """
    times = media_locations.long().cumsum(dim=-1)
    if offset is not None:
        times = times + offset[:, None]
    return times


class MaskedCrossAttention(nn.Module):
    """Text queries, visual keys/values; 8 heads of 64, no biases (reference sizes)."""

    def __init__(
        self,
        dim: int,
        dim_visual: int,
        heads: int = 8,
        dim_head: int = 64,
        only_immediate: bool = True,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.only_immediate = only_immediate
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, x: torch.Tensor, media: torch.Tensor, times: torch.Tensor,
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """
        Args:
            x: (B, L, D) text hidden states.
            media: (B, T_img, n, D_v) visual tokens; slot t belongs to the (t+1)-th image.
            times: (B, L) text time of each token (see :func:`text_time`).
            kv: keys and values by module, computed once per generation (the media are fixed).

        Returns:
            (B, L, D); rows of tokens with no image yet are exactly zero.
        """
        b, t_img, n, _ = media.shape
        q = split_heads(self.to_q(self.norm(x)), self.heads)  # (B, H, L, Dh)
        if kv is not None and id(self) in kv:
            k, v = kv[id(self)]
        else:
            k, v = self.to_kv(media.reshape(b, t_img * n, -1)).chunk(2, dim=-1)
            k, v = split_heads(k, self.heads), split_heads(v, self.heads)  # (B, H, T_img*n, Dh)
            if kv is not None:
                kv[id(self)] = (k, v)

        media_time = torch.arange(1, t_img + 1, device=x.device).repeat_interleave(n)  # (T_img*n,)
        t = times[:, :, None]  # (B, L, 1)
        allowed = media_time == t if self.only_immediate else media_time <= t  # (B, L, T_img*n)
        has_media = times > 0  # (B, L)
        # Rows without any image would be fully masked (NaN in softmax): let them attend anywhere
        # and zero their output below, which is what the reference computes for them.
        allowed = allowed | ~has_media[:, :, None]
        out = attend(q, k, v, allowed[:, None])
        out = merge_heads(out) * has_media[:, :, None].to(out.dtype)
        return self.to_out(out)


class GatedCrossAttentionBlock(nn.Module):
    """x + tanh(g_attn)·xattn(x), then + tanh(g_ff)·FF(x); gates start at 0 (block = identity)."""

    def __init__(
        self,
        dim: int,
        dim_visual: int,
        heads: int = 8,
        dim_head: int = 64,
        ff_mult: int = 4,
        only_immediate: bool = True,
    ) -> None:
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, heads, dim_head, only_immediate)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: torch.Tensor, media: torch.Tensor, times: torch.Tensor,
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        x = x + self.attn(x, media, times, kv) * self.attn_gate.tanh()
        return x + self.ff(x) * self.ff_gate.tanh()


def check_xattn_every(every: object, num_layers: int | None) -> None:
    """The one rule for ``xattn_every`` (model, ``--set``, ``--ablate``): a positive integer that
    divides the LM's decoder-layer count (unknown count: positive is enough). Raises ValueError."""
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"xattn_every must be a positive integer, got {every!r}")
    if num_layers is None:
        return
    valid = [d for d in range(1, num_layers + 1) if num_layers % d == 0]
    if every > num_layers:
        raise ValueError(
            f"xattn_every={every} exceeds the LM's {num_layers} decoder layers: no layer would get "
            f"cross-attention. Valid: {valid}"
        )
    if num_layers % every:
        raise ValueError(
            f"xattn_every={every} does not divide the LM's {num_layers} decoder layers; "
            f"valid: {valid}"
        )


def xattn_layer_indices(num_layers: int, every: int) -> list[int]:
    """Decoder layers that get a cross-attention block before them: (i + 1) % every == 0."""
    check_xattn_every(every, num_layers)
    return [i for i in range(num_layers) if (i + 1) % every == 0]
