"""The shapes world: a seeded procedural world written in the real formats.

Scenes of 1-3 objects (7 shapes, 8 colours, 2 sizes, a 3x3 grid of positions) on textured
backgrounds, rendered with PIL. From them: LAION-style pairs (with a fraction of mismatched
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
from PIL import Image, ImageDraw

from workbench.data.formats import document_json, write_shards

SHAPES = ("circle", "square", "triangle", "star", "ring", "diamond", "cross")
COLOURS = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 30),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
    "cyan": (30, 200, 215),
    "pink": (245, 120, 185),
}
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")
BACKGROUNDS = {"plain": "plain", "stripes": "striped", "dots": "dotted", "checks": "checked",
               "noise": "grainy"}  # texture -> adjective  # fmt: skip
COUNT_WORDS = ("zero", "one", "two", "three")

#: Maps (images, sentences) to an (images x sentences) similarity matrix, e.g. a CLIP model.
SimilarityFn = Callable[[list[Image.Image], list[str]], np.ndarray]


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    row: int
    col: int

    @property
    def position(self) -> str:
        """'top left', 'left', 'centre', 'bottom' ... (middle row and centre column drop out)."""
        row, col = ROWS[self.row], COLUMNS[self.col]
        if row == "middle":
            return col
        return row if col == "centre" else f"{row} {col}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str
    tint: tuple[int, int, int]


def random_scene(rng: np.random.Generator, num_objects: int | None = None) -> Scene:
    n = int(num_objects or rng.integers(1, 4))
    cells = rng.choice(9, size=n, replace=False)
    objects = tuple(
        Obj(
            shape=str(rng.choice(SHAPES)),
            colour=str(rng.choice(list(COLOURS))),
            size=str(rng.choice(SIZES)),
            row=int(cell // 3),
            col=int(cell % 3),
        )
        for cell in cells
    )
    tint = tuple(int(v) for v in rng.integers(150, 235, size=3))
    return Scene(objects, str(rng.choice(list(BACKGROUNDS))), tint)  # type: ignore[arg-type]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        angles = phase + np.arange(n) * 2 * np.pi / n
        return [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]

    if shape == "triangle":
        return ring(3, r, -np.pi / 2)
    if shape == "square":
        return ring(4, r * 1.25, np.pi / 4)
    if shape == "diamond":
        return ring(4, r, 0.0)
    if shape == "star":
        outer, inner = ring(5, r, -np.pi / 2), ring(5, r * 0.45, -np.pi / 2 + np.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "cross":
        a, b = r, r * 0.35
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b),
               (-a, b), (-a, -b), (-b, -b)]  # fmt: skip
        return [(cx + x, cy + y) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, size: int = 64, seed: int = 0) -> Image.Image:
    """Draws ``scene`` at 2x and downsamples (anti-aliased edges)."""
    big = 2 * size
    image = Image.new("RGB", (big, big), scene.tint)
    draw = ImageDraw.Draw(image)
    shade = tuple(max(c - 45, 0) for c in scene.tint)
    step = max(big // 8, 2)
    if scene.background == "stripes":
        for x in range(0, big, step):
            draw.rectangle([x, 0, x + step // 2, big], fill=shade)
    elif scene.background == "dots":
        for x in range(step // 2, big, step):
            for y in range(step // 2, big, step):
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=shade)
    elif scene.background == "checks":
        for x in range(0, big, step):
            for y in range(0, big, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step, y + step], fill=shade)
    elif scene.background == "noise":
        noise = np.random.default_rng(seed).integers(-25, 26, size=(big, big, 1))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
    cell = big / 3
    for obj in scene.objects:
        radius = cell * (0.44 if obj.size == "large" else 0.3)
        cx, cy = (obj.col + 0.5) * cell, (obj.row + 0.5) * cell
        colour = COLOURS[obj.colour]
        if obj.shape in ("circle", "ring"):
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
            if obj.shape == "ring":  # a hole that shows the background tint
                hole = radius * 0.5
                draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=scene.tint)
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, radius), fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


_WHERE = ("in the {p}", "at the {p}", "on the {p}")


def object_phrase(obj: Obj, rng: np.random.Generator, with_position: bool = True) -> str:
    size = f"{obj.size} " if rng.random() < 0.7 else ""
    phrase = f"a {size}{obj.colour} {obj.shape}"
    if with_position:
        where = _WHERE[int(rng.integers(len(_WHERE)))].format(p=obj.position)
        phrase += f" {where}"
    return phrase


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One of several templated descriptions of the whole scene."""
    parts = [object_phrase(o, rng) for o in scene.objects]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
    count = COUNT_WORDS[len(parts)]
    templates = [
        "{listed}.",
        "a picture of {listed}.",
        "there is {listed}.",
        "{count} shape{s}: {listed}.",
        "an image showing {listed} on a {bg} background.",
    ]
    template = templates[int(rng.integers(len(templates)))]
    text = template.format(
        listed=listed,
        count=count,
        s="" if len(parts) == 1 else "s",
        bg=BACKGROUNDS[scene.background],
    )
    return text[0].upper() + text[1:]


FILLER = (
    "Shapes have been drawn by people for thousands of years.",
    "This page collects pictures from our art class.",
    "Everyone brought their own paper and pencils.",
    "The next section is about something else entirely.",
    "We hope you enjoy looking through the collection.",
    "Please leave a comment below if you like it.",
    "The weather was lovely on the day we made these.",
    "Some of the drawings took a long time to finish.",
)


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
        from workbench.data.shapes_eval import questions_for

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
    from workbench.data.shapes_eval import write_eval_sets

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
