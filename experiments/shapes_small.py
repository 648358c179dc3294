"""The shapes baseline at a more faithful scale: the small shapes backbones (a 6-layer LM), a
5x larger world, the reference's resampler and cross-attention sizes, 64/32 batches, 3,000
steps (about an hour on 2 CPU cores; minutes on a GPU).
"""

from __future__ import annotations

from pathlib import Path

from workbench.backbones.shapes import prepare_shapes
from workbench.experiments import shapes_spec
from workbench.spec import RunSpec
from workbench.train.result import home_dir

SIZE = "small"


def prepare(home: str | Path | None = None) -> None:
    """Writes the small shapes world and builds the small backbones (cached; about 12 min)."""
    prepare_shapes(home_dir(home), SIZE)


def spec(home: str | Path | None = None) -> RunSpec:
    return shapes_spec(
        SIZE,
        f"shapes_{SIZE}",
        home,
        **{
            "data.mixture.laion_batch_size": 64,
            "data.mixture.mmc4_batch_size": 32,
            "train.steps": 3000,
            "train.lr": 3e-4,
            "train.schedule.warmup_steps": 150,
            "train.checkpoint_every": 500,
            "train.log_every": 10,
        },
    )
