"""Perceiver resampler: a fixed number of learned latents read each image's patch tokens.

Structure and defaults follow OpenFlamingo (after lucidrains/flamingo-pytorch): 6 layers of
(cross-attention, feed-forward), 64 latents, 8 heads of 64, FF x4, no biases; keys and values are
the media tokens concatenated with the latents; a final LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.registry import Registry


@dataclass(frozen=True)
class ResamplerOptions:
    depth: int = 6
    num_latents: int = 64
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4


RESAMPLERS: Registry[type[nn.Module]] = Registry("resampler")


class FeedForward(nn.Module):
    """Pre-LayerNorm MLP without biases: LN -> Linear(d, m*d) -> GELU -> Linear(m*d, d)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, H*Dh) -> (B, H, L, Dh)."""
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, Dh) -> (B, L, H*Dh)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention of (B, H, L_q, D_h) queries; ``mask`` is boolean, True where allowed.

    PyTorch's fused kernel, except on the CPU in bf16/fp16: there its flash kernel takes 2-4x as
    long, forward and backward, as two matmuls and a softmax (``benchmarks/attention.py``), while
    in fp32 it is the faster one. The softmax is taken in fp32 either way.
    """
    if q.device.type != "cpu" or q.dtype == torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


class PerceiverAttention(nn.Module):
    """Latents attend to [media ‖ latents]."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """
        Args:
            media: (N_img, V, D) patch tokens of each image.
            latents: (N_img, L, D).

        Returns:
            (N_img, L, D), the attention update (residual added by the caller).
        """
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = split_heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(torch.cat((media, latents), dim=1)).chunk(2, dim=-1)
        out = attend(q, split_heads(k, self.heads), split_heads(v, self.heads))
        return self.to_out(merge_heads(out))


class PerceiverBlock(nn.Module):
    def __init__(self, dim: int, options: ResamplerOptions) -> None:
        super().__init__()
        self.attn = PerceiverAttention(dim, options.heads, options.dim_head)
        self.ff = FeedForward(dim, options.ff_mult)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attn(media, latents)
        return latents + self.ff(latents)


@RESAMPLERS.register("perceiver")
class PerceiverResampler(nn.Module):
    """Maps (N_img, V, D) patch tokens to (N_img, num_latents, D) visual tokens."""

    options_type = ResamplerOptions

    def __init__(self, dim: int, options: ResamplerOptions = ResamplerOptions()) -> None:
        super().__init__()
        self.options = options
        self.latents = nn.Parameter(torch.randn(options.num_latents, dim))
        self.layers = nn.ModuleList(PerceiverBlock(dim, options) for _ in range(options.depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(media.shape[0], -1, -1)  # (N_img, L, D)
        for layer in self.layers:
            latents = layer(media, latents)
        return self.norm(latents)
