"""The released OpenFlamingo shapes by name (from its model cards), buildable without any download.

``build_preset(name, weights="random", device="meta")`` builds the exact architecture from
configs alone, so its parameters can be counted (on the meta device, instantly) or its speed
benchmarked (on a GPU, with random weights). ``weights="pretrained"`` loads the real backbones
through ``create_model_and_transforms``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
from transformers import (
    AutoModelForCausalLM,
    GPTNeoXConfig,
    LlamaConfig,
    MptConfig,
    PretrainedConfig,
)

from workbench.model.factory import create_model_and_transforms
from workbench.model.flamingo import Flamingo, FlamingoConfig
from workbench.model.vision import VisionEncoder, random_init_asked
from workbench.registry import Registry

GPT_NEOX_VOCAB = 50432  # the padded embedding size of the GPT-NeoX-tokenizer LMs below
GPT_NEOX_TOKENIZER = 50277  # len() of their tokenizer (EleutherAI/gpt-neox-20b's)
LLAMA_TOKENIZER = 32000


@dataclass(frozen=True)
class Preset:
    vision: str
    vision_pretrained: str
    lm: str  # Hugging Face id of the LM (and its tokenizer)
    xattn_every: int
    lm_config: Callable[[], PretrainedConfig]  # the LM's architecture, for random weights
    xattn_params: float  # as published on the model cards
    tokenizer_size: int  # len(tokenizer) before the Flamingo tokens; the LM is resized to +3


PRESETS: Registry[Preset] = Registry("preset")
PRESETS.add(
    "openflamingo-3b",
    Preset(
        "ViT-L-14", "openai", "anas-awadalla/mpt-1b-redpajama-200b", 1,
        lambda: MptConfig(d_model=2048, n_heads=16, n_layers=24, expansion_ratio=4,
                          max_seq_len=2048, vocab_size=GPT_NEOX_VOCAB),
        0.88e9, GPT_NEOX_TOKENIZER,
    ),
)  # fmt: skip
PRESETS.add(
    "openflamingo-4b",
    Preset(
        "ViT-L-14", "openai", "togethercomputer/RedPajama-INCITE-Base-3B-v1", 2,
        lambda: GPTNeoXConfig(hidden_size=2560, num_hidden_layers=32, num_attention_heads=32,
                              intermediate_size=10240, max_position_embeddings=2048,
                              vocab_size=GPT_NEOX_VOCAB, use_parallel_residual=False),
        0.90e9, GPT_NEOX_TOKENIZER,
    ),
)  # fmt: skip
PRESETS.add(
    "openflamingo-9b",
    Preset(
        "ViT-L-14", "openai", "anas-awadalla/mpt-7b", 4,
        lambda: MptConfig(d_model=4096, n_heads=32, n_layers=32, expansion_ratio=4,
                          max_seq_len=2048, vocab_size=GPT_NEOX_VOCAB),
        1.12e9, GPT_NEOX_TOKENIZER,
    ),
)  # fmt: skip
# v1 (March 2023): LLaMA-7B, untied head; the same cross-attention blocks as the 9B above
PRESETS.add(
    "openflamingo-9b-llama",
    Preset(
        "ViT-L-14", "openai", "huggyllama/llama-7b", 4,
        lambda: LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                            num_attention_heads=32, max_position_embeddings=2048,
                            vocab_size=LLAMA_TOKENIZER, tie_word_embeddings=False),
        1.12e9, LLAMA_TOKENIZER,
    ),
)  # fmt: skip


def build_preset(
    name: str,
    weights: Literal["random", "pretrained"] = "random",
    device: str | torch.device = "meta",
    **options: Any,
) -> Flamingo:
    """The preset's model. Random weights need no download: the LM comes from its config,
    its vocabulary resized to the tokenizer's with the three Flamingo tokens after it (as the
    reference resizes it: MPT's and RedPajama's padded 50432 rows become 50280)."""
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
    vocab = preset.tokenizer_size
    config.vocab_size = vocab + 3  # <|endofchunk|>, <image>, <PAD>
    with torch.device(device):
        with random_init_asked():
            clip = open_clip.create_model(preset.vision, pretrained=None, device=device)
        width = open_clip.get_model_config(preset.vision)["vision_cfg"]["width"]
        lm = AutoModelForCausalLM.from_config(config)
        options.setdefault("xattn_every", preset.xattn_every)
        flamingo = FlamingoConfig(  # the order the tokenizer adds them in
            media_token_id=vocab + 1, eoc_token_id=vocab, pad_token_id=vocab + 2, **options
        )
        return Flamingo(VisionEncoder(clip.visual, width), lm, flamingo)


def count_parameters(model: Flamingo) -> dict[str, int]:
    """Parameters by part (shared tensors counted once); ``reference`` is the total without the
    decoupled special-token tables (the reference keeps those rows inside its matrices)."""
    xattn = sum(p.numel() for block in model.xattn_blocks().values() for p in block.parameters())
    lm = sum(p.numel() for p in model.lang_model.parameters())
    return {
        "vision": sum(p.numel() for p in model.vision.parameters()),
        "resampler": sum(p.numel() for p in model.resampler.parameters()),
        "xattn": xattn,
        "lm": lm - xattn,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
        "reference": sum(p.numel() for n, p in model.named_parameters() if not _is_table(n)),
    }


def _is_table(name: str) -> bool:
    """A decoupled special-token table (``...embed_tokens.special``, ``lm_head.special``)."""
    return name.endswith(".special")


def describe(name: str) -> str:
    """A table of a preset's parameter counts (billions, and exact; ``reference``: what the
    reference's model of it holds) next to the published cross-attention count."""
    counts = count_parameters(build_preset(name))
    preset = PRESETS.get(name)
    lines = [f"{name}: {preset.vision} + {preset.lm}, xattn every {preset.xattn_every}"]
    lines += [f"  {part:<10} {n / 1e9:8.3f}B {n:>15,}" for part, n in counts.items()]
    lines.append(f"  xattn published {preset.xattn_params / 1e9:.2f}B")
    return "\n".join(lines)


def missing_downloads(name: str) -> list[str]:
    """What the preset's pretrained weights need that is neither local nor downloadable here:
    one command per missing item (empty when everything is at hand)."""
    from transformers import AutoConfig

    from workbench.model.vision import cached_open_clip_weights, offline

    preset = PRESETS.get(name)
    missing = []
    if "/" in preset.vision_pretrained:  # a checkpoint file, not an open_clip tag
        if not Path(preset.vision_pretrained).is_file():
            missing.append(f"{preset.vision_pretrained}  (the CLIP checkpoint file)")
    else:
        try:
            cached_open_clip_weights(preset.vision, preset.vision_pretrained)
        except FileNotFoundError:
            hub = open_clip.get_pretrained_cfg(preset.vision, preset.vision_pretrained)["hf_hub"]
            missing.append(f"huggingface-cli download {hub.rstrip('/')}  (CLIP {preset.vision})")
    try:
        AutoConfig.from_pretrained(preset.lm, local_files_only=offline())
    except OSError:
        missing.append(f"huggingface-cli download {preset.lm}  (LM and tokenizer)")
    return missing


def load_released(name: str, checkpoint: str | Path, **options: Any) -> tuple[Flamingo, Any, Any]:
    """(model, image processor, tokenizer) of a released model: the preset's pretrained
    backbones and the released ``checkpoint``. Fails before loading anything when a backbone
    is missing (naming every download), and names every weight whose shape differs."""
    from workbench.model.convert import load_reference_checkpoint

    preset = PRESETS.get(name)
    missing = missing_downloads(name)
    if missing:
        raise OSError(
            f"{name} needs weights that are not in the local Hugging Face cache and cannot be "
            "downloaded here. On a connected machine run, then copy ~/.cache/huggingface/hub "
            "here:\n  " + "\n  ".join(missing)
        )
    model, processor, tokenizer = create_model_and_transforms(
        preset.vision, preset.lm, vision_pretrained=preset.vision_pretrained,
        xattn_every=preset.xattn_every, **options,
    )  # fmt: skip
    try:
        load_reference_checkpoint(model, checkpoint)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{checkpoint} is not a checkpoint of {name}: {err}") from None
    return model.eval(), processor, tokenizer
