"""The baseline on the shapes world: the tiny shapes CLIP and LM, about 7 minutes on 2 CPU
cores.

The reference's recipe at a toy scale: the paired LAION + MMC4 mixture with its 0.2/1.0 loss
weights, cross-attention before every layer, trainable special tokens, the MMC4 similarity
filter at 0.24. Changed for the shapes world: no horizontal flips (captions say left/right), no
minimum image size (the shapes PNGs are a few hundred bytes), a smaller resampler and
cross-attention, and a higher learning rate with a short warmup, as the run is 1,000 steps
instead of tens of thousands.
"""

from __future__ import annotations

from pathlib import Path

from workbench.backbones.shapes import prepare_shapes
from workbench.experiments import shapes_spec
from workbench.spec import RunSpec
from workbench.train.result import home_dir

SIZE = "tiny"


def prepare(home: str | Path | None = None) -> None:
    """Writes the shapes world and builds the tiny backbones (cached; about 3 min the first
    time)."""
    prepare_shapes(home_dir(home), SIZE)


def spec(home: str | Path | None = None) -> RunSpec:
    return shapes_spec(
        SIZE,
        f"shapes_{SIZE}",
        home,
        **{
            "model.resampler.depth": 2,
            "model.resampler.num_latents": 16,
            "model.xattn_heads": 4,
            "model.xattn_dim_head": 32,
            "data.mixture.laion_batch_size": 32,
            "data.mixture.mmc4_batch_size": 16,
            "data.mmc4.max_tokens": 128,
            "train.steps": 1000,
            "train.lr": 1e-3,
            "train.schedule.warmup_steps": 30,
            "train.checkpoint_every": 100,
            "train.log_every": 10,
        },
    )
