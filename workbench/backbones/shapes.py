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
from workbench.data.shapes import write_planted_pairs, write_shapes_world, write_validation_sets

#: Bump when what the backbones train on (pairs, LM texts) or their training code changes.
BACKBONE_VERSION = 3
#: Bump when the shapes world's shards change (the world directory is named by it).
WORLD_VERSION = 4

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
        "world_version": BACKBONE_VERSION,
        "clip": asdict(clip),
        "lm": asdict(lm),
    }


def backbones_root(cache_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Where :func:`build_shapes_backbones` keeps (or will keep) this recipe's backbones."""
    recipe = recipe_for(size, seed)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"shapes-{size}-{key}"


def build_shapes_backbones(
    cache_dir: str | Path, size: str = "tiny", seed: int = 0, show_progress: bool = True
) -> ShapesBackbones:
    """Builds the shapes CLIP and LM for ``size`` ("tiny" or "small"), or returns the cached
    ones. Writes ``recipe.json`` and ``quality.json`` beside the weights."""
    recipe = recipe_for(size, seed)
    root = backbones_root(cache_dir, size, seed)
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
    quality = root / "quality.json"
    return ShapesBackbones(
        root=root,
        vision=name,
        vision_config=root / "clip" / f"{name}.json",
        vision_checkpoint=root / "clip" / "open_clip_pytorch_model.bin",
        lm=root / "lm",
        quality=json.loads(quality.read_text()) if quality.exists() else {},
    )


# --- the shapes world and backbones of an experiment ---------------------------------------------

#: World sizes of the shapes experiments: image-text pairs, documents, evaluation items.
WORLDS: dict[str, dict[str, int]] = {
    "tiny": {"n_pairs": 4000, "n_docs": 2000, "n_eval": 200},
    "small": {"n_pairs": 20000, "n_docs": 10000, "n_eval": 500},
}


@dataclass(frozen=True)
class ShapesSetup:
    """Where a shapes experiment's data and backbones live under the workbench home."""

    world: Path
    laion: str  # brace patterns of the shards
    mmc4: str
    backbones: ShapesBackbones

    @property
    def validation(self) -> Path:
        """The held-out validation shards (``laion/``, ``mmc4/``) of the world."""
        return self.world / "validation"

    @property
    def ready(self) -> bool:
        built = (self.backbones.root / "quality.json").exists()
        return built and all((f / "COMPLETE").exists() for f in (self.world, self.validation))


def shapes_setup(home: str | Path, size: str = "tiny", seed: int = 0) -> ShapesSetup:
    """The paths of a shapes experiment (nothing is built: see :func:`prepare_shapes`)."""
    if size not in WORLDS:
        raise ValueError(f"unknown shapes size {size!r}; choose from {sorted(WORLDS)}")
    sizes = WORLDS[size]
    world = (
        Path(home) / "shapes" / f"world-{sizes['n_pairs']}-{sizes['n_docs']}-seed{seed}"
        f"-v{WORLD_VERSION}"
    )
    per_shard = _PER_SHARD
    laion_shards = -(-sizes["n_pairs"] // per_shard)
    mmc4_shards = -(-sizes["n_docs"] // per_shard)
    return ShapesSetup(
        world=world,
        laion=f"{world}/laion/{{{0:09d}..{laion_shards - 1:09d}}}.tar",
        mmc4=f"{world}/mmc4/{{{0:09d}..{mmc4_shards - 1:09d}}}.tar",
        backbones=_located(backbones_root(Path(home) / "backbones", size, seed), size),
    )


_PER_SHARD = 250


def prepare_shapes(
    home: str | Path, size: str = "tiny", seed: int = 0, show_progress: bool = True
) -> ShapesSetup:
    """Writes the shapes world and builds the backbones of ``size`` unless already there."""
    setup = shapes_setup(home, size, seed)
    if not (setup.world / "COMPLETE").exists():
        shutil.rmtree(setup.world, ignore_errors=True)
        sizes = WORLDS[size]
        write_shapes_world(
            setup.world,
            n_pairs=sizes["n_pairs"],
            n_docs=sizes["n_docs"],
            n_eval=sizes["n_eval"],
            seed=seed,
            per_shard=_PER_SHARD,
        )
        (setup.world / "COMPLETE").touch()
    if not (setup.validation / "COMPLETE").exists():  # worlds written before it get it added
        shutil.rmtree(setup.validation, ignore_errors=True)
        write_validation_sets(setup.validation, seed=seed)
        write_planted_pairs(setup.world, WORLDS[size]["n_pairs"], seed, per_shard=_PER_SHARD)
        (setup.validation / "COMPLETE").touch()
    build_shapes_backbones(Path(home) / "backbones", size, seed, show_progress)
    return shapes_setup(home, size, seed)
