"""The shapes world: a seeded procedural world written in the real formats.

From the scenes of ``workbench.data.scenes``: LAION-style pairs (with a fraction of mismatched
captions, like web noise), MMC4-style documents (sentences describing an image, as a caption or,
like a quiz page, as a question and its short answer; filler sentences; distractor images; a
similarity matrix), and evaluation sets in the standard formats (``workbench.data.shapes_eval``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.data.formats import document_json, write_shards
from workbench.data.scenes import FILLER, Scene, caption, questions_for, random_scene, render
from workbench.data.shapes_eval import write_eval_sets

#: Maps (images, sentences) to an (images x sentences) similarity matrix, e.g. a CLIP model.
SimilarityFn = Callable[[list[Image.Image], list[str]], np.ndarray]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class OracleSimilarity:
    """Calibrated stand-in for CLIP similarities (MMC4's ViT-L/14 cosines).

    A matching (image, sentence) pair scores ``doc_quality + noise``; every other pair scores
    low. ``doc_quality`` varies per document, as real documents do, so that at threshold 0.24
    about 43% of documents lose all their images and at 0.32 about 89% (MMC4: 42.7%, 88.7%;
    measured on 6,000 documents: 43.0%, 88.6%).
    """

    quality_mean: float = 0.235
    quality_std: float = 0.055
    match_noise: float = 0.025
    other_mean: float = 0.14
    other_std: float = 0.035

    def __call__(self, matches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        quality = rng.normal(self.quality_mean, self.quality_std)
        sim = rng.normal(self.other_mean, self.other_std, size=matches.shape)
        sim[matches] = quality + rng.normal(0.0, self.match_noise, size=int(matches.sum()))
        return np.clip(sim, -1.0, 1.0)


#: Share of described images whose sentence is a question and answer about them (quiz pages,
#: as the web has), in the VQA prompt's format; the rest get a caption.
QUIZ_FRACTION = 0.5


def _describe(scene: Scene, rng: np.random.Generator) -> str:
    if rng.random() < QUIZ_FRACTION:
        options = questions_for(scene, rng)
        question, answer, _ = options[int(rng.integers(len(options)))]
        return f"Question:{question} Short answer:{answer}."
    return caption(scene, rng)


def document(
    rng: np.random.Generator,
    image_size: int,
    similarity_fn: SimilarityFn | None = None,
    oracle: OracleSimilarity = OracleSimilarity(),
) -> dict[str, object]:
    """One MMC4-style document (its ``json`` payload)."""
    num_described = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15]))
    num_distractors = int(rng.integers(0, 3))
    scenes = [random_scene(rng) for _ in range(num_described + num_distractors)]
    described = [_describe(s, rng) for s in scenes[:num_described]]
    fillers = list(rng.choice(FILLER, size=int(rng.integers(1, 5)), replace=False))
    sentences = described + fillers
    order = rng.permutation(len(sentences))  # the document's reading order
    sentences = [sentences[i] for i in order]
    image_order = rng.permutation(len(scenes))  # images listed in another order than the text
    images = [render(scenes[i], image_size, seed=int(rng.integers(1 << 30))) for i in image_order]
    matches = np.zeros((len(scenes), len(sentences)), dtype=bool)
    for row, scene_index in enumerate(image_order):
        if scene_index < num_described:
            matches[row, int(np.where(order == scene_index)[0][0])] = True
    sim = similarity_fn(images, sentences) if similarity_fn else oracle(matches, rng)
    return document_json(sentences, [png_bytes(i) for i in images], sim)


def pairs(
    n: int, seed: int, image_size: int = 64, mismatch_fraction: float = 0.1
) -> Iterator[dict[str, object]]:
    """LAION-style samples; a ``mismatch_fraction`` of captions describe another scene."""
    rng = np.random.default_rng([seed, 1])
    for index in range(n):
        scene = random_scene(rng)
        text_scene = random_scene(rng) if rng.random() < mismatch_fraction else scene
        image = render(scene, image_size, seed=index)
        yield {
            "__key__": f"pair{index:08d}",
            "png": png_bytes(image),
            "txt": caption(text_scene, rng),
        }


def documents(
    n: int, seed: int, image_size: int = 64, similarity_fn: SimilarityFn | None = None
) -> Iterator[dict[str, object]]:
    rng = np.random.default_rng([seed, 2])
    for index in range(n):
        doc = document(rng, image_size, similarity_fn)
        yield {"__key__": f"doc{index:08d}", "json": json.dumps(doc).encode()}


#: Seeds the validation sets' streams apart from the training shards' (same distribution).
VALIDATION_SEED_OFFSET = 1_000_003


def write_validation_sets(
    out_dir: str | Path, n_pairs: int = 512, n_docs: int = 256, seed: int = 0,
    image_size: int = 64, per_shard: int = 256, mismatch_fraction: float = 0.1,
) -> dict[str, list[Path]]:  # fmt: skip
    """Writes held-out ``laion/*.tar`` and ``mmc4/*.tar`` under ``out_dir``: new scenes from the
    training shards' distribution (mismatched captions included), read by every run of a study
    the same way (``workbench.eval.validation``)."""
    out, held_out = Path(out_dir), seed + VALIDATION_SEED_OFFSET
    return {
        "laion": write_shards(pairs(n_pairs, held_out, image_size, mismatch_fraction),
                              out / "laion", per_shard),
        "mmc4": write_shards(documents(n_docs, held_out, image_size), out / "mmc4", per_shard),
    }  # fmt: skip


PLANTED_FOLDER = "laion_mismatched"


def write_planted_pairs(
    world: str | Path, n_pairs: int, seed: int = 0, image_size: int = 64, per_shard: int = 250
) -> list[Path]:
    """Writes ``<world>/laion_mismatched/*.tar``: LAION-style pairs whose every caption
    describes another scene (no image-text signal left), for the planted-effect control
    (``ablations/controls.py``)."""
    samples = pairs(n_pairs, seed, image_size, mismatch_fraction=1.0)
    return write_shards(samples, Path(world) / PLANTED_FOLDER, per_shard)


def write_shapes_world(
    out_dir: str | Path,
    n_pairs: int = 2000,
    n_docs: int = 1000,
    n_eval: int = 200,
    seed: int = 0,
    image_size: int = 64,
    per_shard: int = 250,
    mismatch_fraction: float = 0.1,
    similarity_fn: SimilarityFn | None = None,
) -> dict[str, list[Path]]:
    """Writes ``laion/*.tar``, ``mmc4/*.tar`` and ``eval/`` under ``out_dir``.

    Returns:
        {"laion": shards, "mmc4": shards}.
    """
    out = Path(out_dir)
    written = {
        "laion": write_shards(
            pairs(n_pairs, seed, image_size, mismatch_fraction), out / "laion", per_shard
        ),
        "mmc4": write_shards(
            documents(n_docs, seed, image_size, similarity_fn), out / "mmc4", per_shard
        ),
    }
    if n_eval:
        write_eval_sets(out / "eval", n_eval, seed, image_size)
    return written
