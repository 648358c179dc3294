"""The scenes of the shapes world: what a scene holds, how it is drawn, and what can be said
about it.

A scene is 1-3 objects (7 shapes, 8 colours, 2 sizes, a 3x3 grid of positions) on a textured
background, rendered with PIL. Its sentences are templated captions, filler that describes no
image, and questions with their short answers; the training shards (``workbench.data.shapes``),
the evaluation sets (``workbench.data.shapes_eval``) and the shapes backbones all speak them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

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


def questions_for(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(question, answer, answer type) pairs answerable from ``scene``."""
    objs = scene.objects
    shapes = [o.shape for o in objs]
    out = [("How many shapes are there?", str(len(objs)), "number")]
    unique = [o for o in objs if shapes.count(o.shape) == 1]
    if unique:
        o = unique[int(rng.integers(len(unique)))]
        out.append((f"What colour is the {o.shape}?", o.colour, "other"))
        out.append((f"Where is the {o.shape}?", o.position, "other"))
    colours = [o.colour for o in objs]
    by_colour = [o for o in objs if colours.count(o.colour) == 1]
    if by_colour:
        o = by_colour[int(rng.integers(len(by_colour)))]
        out.append((f"What shape is the {o.colour} object?", o.shape, "other"))
    shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
    present = any(o.shape == shape and o.colour == colour for o in objs)
    if rng.random() < 0.5:  # ask about a present object half the time: balanced yes/no
        o = objs[int(rng.integers(len(objs)))]
        shape, colour, present = o.shape, o.colour, True
    out.append((f"Is there a {colour} {shape}?", "yes" if present else "no", "yes/no"))
    return out
