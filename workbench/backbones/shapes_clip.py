"""The shapes CLIP: a small open_clip model trained contrastively on shapes pairs.

Built from a custom config registered with open_clip's own mechanism, trained with open_clip's
``ClipLoss``, saved as an open_clip checkpoint plus its config JSON, and loaded back with
``open_clip.create_model_and_transforms(name, pretrained=<checkpoint>)``, like any CLIP.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from workbench.data.scenes import COLOURS, SHAPES, SIZES, Scene, caption, random_scene, render
from workbench.model.vision import random_init_asked

CHECKPOINT = "open_clip_pytorch_model.bin"


@dataclass(frozen=True)
class ClipRecipe:
    """Model size and training schedule of a shapes CLIP."""

    width: int = 128
    vision_width: int = 0  # 0: same as width
    vision_layers: int = 4
    text_layers: int = 3
    embed_dim: int = 128
    image_size: int = 48  # 3x3 patches of 16 px: one per cell of the scene grid (much faster
    patch_size: int = 16  # to learn shapes than patches straddling objects)
    context_length: int = 32
    steps: int = 500
    batch_size: int = 128
    lr: float = 5e-4
    warmup: int = 50
    pool: int = 6000  # distinct training scenes (captions are re-drawn every time)

    def open_clip_config(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "layers": self.vision_layers,
                "width": self.vision_width or self.width,
                "head_width": 32,
                "patch_size": self.patch_size,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": 49408,
                "width": self.width,
                "heads": self.width // 32,
                "layers": self.text_layers,
            },
        }


def register_config(name: str, config: dict[str, Any], directory: Path) -> Path:
    """Writes ``name.json`` and registers it with open_clip (the name is the file stem)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config, indent=2))
    open_clip.add_model_config(path)
    return path


def _lr(step: int, recipe: ClipRecipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(recipe.steps - recipe.warmup, 1)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_clip(
    name: str,
    recipe: ClipRecipe,
    out_dir: Path,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> Path:
    """Trains the CLIP and writes ``out_dir/{name}.json`` and its checkpoint; returns the dir."""
    register_config(name, recipe.open_clip_config(), out_dir)
    torch.manual_seed(seed)
    with random_init_asked():  # the CLIP is about to be trained from scratch
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(name)
    rng = np.random.default_rng([seed, 10])
    # scenes come in twins that differ in one object's shape, and batches hold both twins:
    # colour and position alone cannot tell them apart (without twins, shape is barely learnt)
    scenes = []
    for i in range(recipe.pool // 2):
        scene = random_scene(rng, 1 if i % 2 else None)
        scenes += [scene, _reshaped(scene, rng)]
    # rendered at the world's 64 px and resized by the CLIP's preprocessing, like training data
    images = torch.stack([preprocess(render(s, seed=i)) for i, s in enumerate(scenes)])

    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.1)
    model.train()
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, recipe)
        twins = rng.choice(len(scenes) // 2, size=recipe.batch_size // 2, replace=False)
        index = np.concatenate([2 * twins, 2 * twins + 1])
        texts = tokenizer([caption(scenes[i], rng) for i in index])
        image_features, text_features, logit_scale = model(images[index], texts)[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if progress:
            progress(step, loss.item())
    torch.save(model.state_dict(), out_dir / CHECKPOINT)
    return out_dir


def _reshaped(scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene with one object's shape changed."""
    k = int(rng.integers(len(scene.objects)))
    obj = scene.objects[k]
    shape = str(rng.choice([s for s in SHAPES if s != obj.shape]))
    objects = (*scene.objects[:k], dataclasses.replace(obj, shape=shape), *scene.objects[k + 1 :])
    return dataclasses.replace(scene, objects=objects)


def load_clip(clip_dir: str | Path) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) of a saved shapes CLIP, through open_clip's loader."""
    config = next(Path(clip_dir).glob("*.json"))
    open_clip.add_model_config(config)
    model, _, preprocess = open_clip.create_model_and_transforms(
        config.stem, pretrained=str(Path(clip_dir) / CHECKPOINT)
    )
    return model.eval(), preprocess, open_clip.get_tokenizer(config.stem)


@torch.no_grad()
def _embed_texts(model: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


@torch.no_grad()
def _embed_images(model: Any, preprocess: Any, images: list[Image.Image]) -> torch.Tensor:
    return F.normalize(model.encode_image(torch.stack([preprocess(i) for i in images])), dim=-1)


#: Zero-shot classes: each value's prompts vary the other attributes (a prompt ensemble).
ZERO_SHOT_PROMPTS: dict[str, tuple[tuple[str, ...], Callable[[str], list[str]]]] = {
    "shape": (SHAPES, lambda shape: [f"a {z} {c} {shape}." for c in COLOURS for z in SIZES]),
    "colour": (
        tuple(COLOURS),
        lambda colour: [f"a {z} {colour} {s}." for s in SHAPES for z in SIZES],
    ),
}


def _zero_shot_accuracy(
    model: Any, tokenizer: Any, image_emb: torch.Tensor, attribute: str, labels: list[str]
) -> float:
    values, prompts = ZERO_SHOT_PROMPTS[attribute]
    classes = torch.stack(
        [F.normalize(_embed_texts(model, tokenizer, prompts(v)).mean(0), dim=-1) for v in values]
    )
    predicted = (image_emb @ classes.T).argmax(1)
    correct = predicted == torch.tensor([values.index(x) for x in labels])
    return round(float(correct.float().mean()), 4)


def evaluate_clip(
    clip_dir: str | Path, seed: int, n_zero_shot: int = 1000, n_retrieval: int = 400
) -> dict[str, float]:
    """Held-out zero-shot colour and shape accuracy of single objects, and image->caption
    retrieval top-1 among ``n_retrieval`` scenes of 1-3 objects. Images are rendered at the
    world's 64 px and resized by the CLIP's own preprocessing, as in training."""
    model, preprocess, tokenizer = load_clip(clip_dir)
    rng = np.random.default_rng([seed, 11])  # disjoint from the training stream
    singles = [random_scene(rng, 1) for _ in range(n_zero_shot)]
    single_emb = _embed_images(
        model, preprocess, [render(s, seed=i) for i, s in enumerate(singles)]
    )
    scenes = [random_scene(rng) for _ in range(n_retrieval)]
    scene_emb = _embed_images(
        model, preprocess, [render(s, seed=n_zero_shot + i) for i, s in enumerate(scenes)]
    )
    text_emb = _embed_texts(model, tokenizer, [caption(s, rng) for s in scenes])
    retrieval = (scene_emb @ text_emb.T).argmax(1) == torch.arange(n_retrieval)
    return {
        "zero_shot_shape_accuracy": _zero_shot_accuracy(
            model, tokenizer, single_emb, "shape", [s.objects[0].shape for s in singles]
        ),
        "zero_shot_colour_accuracy": _zero_shot_accuracy(
            model, tokenizer, single_emb, "colour", [s.objects[0].colour for s in singles]
        ),
        "zero_shot_images": n_zero_shot,
        "retrieval_image_to_caption_top1": round(float(retrieval.float().mean()), 4),
        "retrieval_candidates": n_retrieval,
    }


def clip_similarity(clip_dir: str | Path) -> Callable[[list[Image.Image], list[str]], np.ndarray]:
    """A ``similarity_fn`` for ``write_shapes_world``: cosine similarities (images x sentences)."""
    model, preprocess, tokenizer = load_clip(clip_dir)

    def similarity(images: list[Image.Image], sentences: list[str]) -> np.ndarray:
        return (
            _embed_images(model, preprocess, images) @ _embed_texts(model, tokenizer, sentences).T
        ).numpy()

    return similarity
