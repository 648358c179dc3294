"""Build (once) and cache the pretrained shapes backbones: a CLIP and a causal LM.

The cache key is a hash of the recipe (sizes, schedules, seed, world version), so a second call
with the same recipe returns at once, and any change to the recipe builds anew beside it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from workbench.backbones.shapes_clip import ClipRecipe, evaluate_clip, train_clip
from workbench.backbones.shapes_lm import LMRecipe, evaluate_lm, train_lm

#: Bump when the shapes world or the training code changes what a recipe produces.
WORLD_VERSION = 2

SIZES: dict[str, tuple[ClipRecipe, LMRecipe]] = {
    "tiny": (ClipRecipe(vision_width=192, text_layers=2, steps=500), LMRecipe(steps=200)),
    "small": (
        ClipRecipe(width=192, vision_layers=5, text_layers=3, embed_dim=192, steps=800),
        LMRecipe(hidden=256, layers=6, heads=8, vocab=2048, steps=600),
    ),
}


@dataclass(frozen=True)
class ShapesBackbones:
    """Where a built pair of backbones lives, and how good it is."""

    root: Path
    vision: str  # the open_clip model name (its config is registered by ``register``)
    vision_config: Path
    vision_checkpoint: Path
    lm: Path  # a save_pretrained directory (model and tokenizer)
    quality: dict[str, Any]

    def model_kwargs(self) -> dict[str, Any]:
        """Arguments for ``create_model_and_transforms``."""
        return {
            "vision": str(self.vision_config),
            "lm": str(self.lm),
            "vision_pretrained": str(self.vision_checkpoint),
        }


def recipe_for(size: str, seed: int) -> dict[str, Any]:
    if size not in SIZES:
        raise ValueError(f"unknown backbone size {size!r}; choose from {sorted(SIZES)}")
    clip, lm = SIZES[size]
    return {
        "size": size,
        "seed": seed,
        "world_version": WORLD_VERSION,
        "clip": asdict(clip),
        "lm": asdict(lm),
    }


def build_shapes_backbones(
    cache_dir: str | Path, size: str = "tiny", seed: int = 0, show_progress: bool = True
) -> ShapesBackbones:
    """Builds the shapes CLIP and LM for ``size`` ("tiny" or "small"), or returns the cached
    ones. Writes ``recipe.json`` and ``quality.json`` beside the weights."""
    recipe = recipe_for(size, seed)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"shapes-{size}-{key}"
    if (root / "quality.json").exists():  # written last: a complete build
        return _located(root, size)
    clip_recipe, lm_recipe = SIZES[size]
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "recipe.json").write_text(json.dumps(recipe, indent=2))

    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_progress) as progress:

        def reporter(description: str, total: int) -> Callable[[int, float], None]:
            task = progress.add_task(description, total=total, loss=0.0)
            return lambda step, loss: progress.update(task, completed=step + 1, loss=loss)

        clip_progress = reporter(f"shapes CLIP ({size})", clip_recipe.steps)
        train_clip(_clip_name(size), clip_recipe, partial / "clip", seed, clip_progress)
        train_lm(lm_recipe, partial / "lm", seed, reporter(f"shapes LM ({size})", lm_recipe.steps))
    quality = {
        "clip": evaluate_clip(partial / "clip", seed),
        "lm": evaluate_lm(partial / "lm", seed),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (partial / "quality.json").write_text(json.dumps(quality, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return _located(root, size)


def _clip_name(size: str) -> str:
    return f"wb-shapes-clip-{size}"


def _located(root: Path, size: str) -> ShapesBackbones:
    name = _clip_name(size)
    return ShapesBackbones(
        root=root,
        vision=name,
        vision_config=root / "clip" / f"{name}.json",
        vision_checkpoint=root / "clip" / "open_clip_pytorch_model.bin",
        lm=root / "lm",
        quality=json.loads((root / "quality.json").read_text()),
    )
