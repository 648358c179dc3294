"""Small builders shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.model import Flamingo, create_model_and_transforms
from workbench.spec import RunSpec

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


def base_spec(world: dict[str, str], lm_dir: Path, **changes) -> RunSpec:
    """A tiny run on the 32-pixel shapes world (the ``tiny_world`` fixture): random wb-tiny-vit,
    a tiny random LM, 4 + 2 samples per step."""
    return RunSpec(name="t").override(
        {
            "model.lm": str(lm_dir),
            "model.resampler.depth": 1,
            "data.laion_shards": world["laion"],
            "data.mmc4_shards": world["mmc4"],
            "data.mixture.laion_batch_size": 4,
            "data.mixture.mmc4_batch_size": 2,
            "data.mmc4.min_image_bytes": 0,
            "data.mmc4.max_tokens": 64,
            "data.mmc4.hflip_prob": 0.0,
            "data.laion.hflip_prob": 0.0,
            "data.mmc4_filter.threshold": 0.2,
            "train.lr": 1e-3,
            "train.schedule.warmup_steps": 2,
            "train.log_every": 2,
            **changes,
        }
    )


def experiment_file(folder: Path, spec: RunSpec, name: str = "tiny_experiment") -> Path:
    """An experiment file (``def spec()``) whose spec is ``spec``."""
    path = folder / f"{name}.py"
    path.write_text(
        "from workbench.spec import RunSpec\n\n\n"
        "def spec(home=None):\n"
        f"    return RunSpec.from_json({spec.to_json()!r})\n"
    )
    return path
