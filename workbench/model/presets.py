"""The released OpenFlamingo shapes by name (from its model cards), buildable without any download.

``build_preset(name, weights="random", device="meta")`` builds the exact architecture from
configs alone, so its parameters can be counted (on the meta device, instantly) or its speed
benchmarked (on a GPU, with random weights). ``weights="pretrained"`` loads the real backbones
through ``create_model_and_transforms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import open_clip
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig, MptConfig, PretrainedConfig

from workbench.model.factory import create_model_and_transforms
from workbench.model.flamingo import Flamingo, FlamingoConfig
from workbench.model.vision import VisionEncoder
from workbench.registry import Registry

GPT_NEOX_VOCAB = 50432  # the padded embedding size of the GPT-NeoX-tokenizer LMs below


@dataclass(frozen=True)
class Preset:
    vision: str
    vision_pretrained: str
    lm: str  # Hugging Face id of the LM (and its tokenizer)
    xattn_every: int
    lm_config: Callable[[], PretrainedConfig]  # the LM's architecture, for random weights
    xattn_params: float  # as published on the model cards


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.add(
    "openflamingo-3b",
    Preset(
        "ViT-L-14", "openai", "anas-awadalla/mpt-1b-redpajama-200b", 1,
        lambda: MptConfig(d_model=2048, n_heads=16, n_layers=24, expansion_ratio=4,
                          max_seq_len=2048, vocab_size=GPT_NEOX_VOCAB),
        0.88e9,
    ),
)  # fmt: skip
PRESETS.add(
    "openflamingo-4b",
    Preset(
        "ViT-L-14", "openai", "togethercomputer/RedPajama-INCITE-Base-3B-v1", 2,
        lambda: GPTNeoXConfig(hidden_size=2560, num_hidden_layers=32, num_attention_heads=32,
                              intermediate_size=10240, max_position_embeddings=2048,
                              vocab_size=GPT_NEOX_VOCAB, use_parallel_residual=False),
        0.90e9,
    ),
)  # fmt: skip
PRESETS.add(
    "openflamingo-9b",
    Preset(
        "ViT-L-14", "openai", "anas-awadalla/mpt-7b", 4,
        lambda: MptConfig(d_model=4096, n_heads=32, n_layers=32, expansion_ratio=4,
                          max_seq_len=2048, vocab_size=GPT_NEOX_VOCAB),
        1.12e9,
    ),
)  # fmt: skip


def build_preset(
    name: str,
    weights: Literal["random", "pretrained"] = "random",
    device: str | torch.device = "meta",
    **options: Any,
) -> Flamingo:
    """The preset's model. Random weights need no download: the LM comes from its config
    and the three special tokens take the rows after its vocabulary."""
    preset = PRESETS.get(name)
    if weights == "pretrained":
        model, _, _ = create_model_and_transforms(
            preset.vision, preset.lm, vision_pretrained=preset.vision_pretrained,
            xattn_every=preset.xattn_every, **options,
        )  # fmt: skip
        return model.to(device)
    if weights != "random":
        raise ValueError(f"weights must be 'random' or 'pretrained', got {weights!r}")
    config = preset.lm_config()
    vocab = config.vocab_size
    config.vocab_size = vocab + 3  # <image>, <|endofchunk|>, <PAD>
    with torch.device(device):
        clip = open_clip.create_model(preset.vision, pretrained=None, device=device)
        width = open_clip.get_model_config(preset.vision)["vision_cfg"]["width"]
        lm = AutoModelForCausalLM.from_config(config)
        options.setdefault("xattn_every", preset.xattn_every)
        flamingo = FlamingoConfig(
            media_token_id=vocab, eoc_token_id=vocab + 1, pad_token_id=vocab + 2, **options
        )
        return Flamingo(VisionEncoder(clip.visual, width), lm, flamingo)


def count_parameters(model: Flamingo) -> dict[str, int]:
    """Parameters by part (shared tensors counted once)."""
    xattn = sum(p.numel() for block in model.xattn_blocks().values() for p in block.parameters())
    lm = sum(p.numel() for p in model.lang_model.parameters())
    return {
        "vision": sum(p.numel() for p in model.vision.parameters()),
        "resampler": sum(p.numel() for p in model.resampler.parameters()),
        "xattn": xattn,
        "lm": lm - xattn,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }


def describe(name: str) -> str:
    """A table of a preset's parameter counts next to the published cross-attention count."""
    counts = count_parameters(build_preset(name))
    preset = PRESETS.get(name)
    lines = [f"{name}: {preset.vision} + {preset.lm}, xattn every {preset.xattn_every}"]
    lines += [f"  {part:<10} {n / 1e9:8.3f}B" for part, n in counts.items()]
    lines.append(f"  xattn published {preset.xattn_params / 1e9:.2f}B")
    return "\n".join(lines)
