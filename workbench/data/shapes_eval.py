"""Held-out shapes evaluation sets, in the formats of the real benchmarks' standard files.

Under ``out_dir``:
- ``images/``: PNG files shared by all tasks;
- ``captioning/karpathy_shapes.json``: COCO Karpathy layout, 5 reference captions per image,
  ``split`` "train" (the query set demonstrations come from) or "test";
- ``vqa/{train,test}_{questions,annotations}.json``: VQAv2 layout, 10 answers per question;
  colour, shape, count, position and yes/no questions;
- ``classification/{shape,colour,invented}/{train,test}.jsonl`` + ``classnames.json``: single
  objects labelled by shape, by colour, or by invented words that only in-context examples
  define (``blicket`` is a circle, ...).

Evaluation scenes come from their own seed stream, disjoint from the training shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.shapes import COLOURS, SHAPES, Scene, caption, random_scene, render

INVENTED = dict(zip(SHAPES, ("blicket", "dax", "wug", "fep", "toma", "zorp", "kiki"), strict=True))


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


def _answers(answer: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Ten annotator answers: the true one, with an occasional variant spelling."""
    variants = {"1": "one", "2": "two", "3": "three", "centre": "center"}
    answers = [
        variants[answer] if answer in variants and rng.random() < 0.2 else answer for _ in range(10)
    ]
    return [
        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
    ]


def write_eval_sets(out_dir: str | Path, n: int, seed: int = 0, image_size: int = 64) -> Path:
    """Writes ``n`` test and ``n`` query (train) images per task family; returns ``out_dir``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    karpathy: list[dict[str, Any]] = []
    questions: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    annotations: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    classification: dict[str, dict[str, list[dict[str, Any]]]] = {
        task: {"train": [], "test": []} for task in ("shape", "colour", "invented")
    }
    image_id = 0
    for split in ("train", "test"):
        for _ in range(n):
            image_id += 1
            scene = random_scene(rng)
            name = f"shapes_{image_id:06d}.png"
            render(scene, image_size, seed=image_id).save(out / "images" / name)
            refs = [caption(scene, rng) for _ in range(5)]
            karpathy.append({
                "filepath": "images", "filename": name, "imgid": image_id, "cocoid": image_id,
                "split": split,
                "sentences": [
                    {"raw": r, "tokens": r.lower().strip(".").split(), "imgid": image_id,
                     "sentid": image_id * 10 + k}
                    for k, r in enumerate(refs)
                ],
            })  # fmt: skip
            for k, (question, answer, kind) in enumerate(questions_for(scene, rng)):
                qid = image_id * 10 + k
                questions[split].append(
                    {"image_id": image_id, "question": question, "question_id": qid}
                )
                annotations[split].append({
                    "image_id": image_id, "question_id": qid, "answer_type": kind,
                    "question_type": question.split()[0].lower(), "multiple_choice_answer": answer,
                    "answers": _answers(answer, rng),
                })  # fmt: skip
            single = random_scene(rng, num_objects=1)
            obj = single.objects[0]
            single_name = f"single_{image_id:06d}.png"
            render(single, image_size, seed=image_id).save(out / "images" / single_name)
            for task, label in (
                ("shape", obj.shape),
                ("colour", obj.colour),
                ("invented", INVENTED[obj.shape]),
            ):
                classification[task][split].append(
                    {"id": image_id, "image": f"images/{single_name}", "label": label}
                )

    (out / "captioning").mkdir(exist_ok=True)
    (out / "captioning" / "karpathy_shapes.json").write_text(
        json.dumps({"images": karpathy, "dataset": "shapes"})
    )
    (out / "vqa").mkdir(exist_ok=True)
    for split in ("train", "test"):
        (out / "vqa" / f"{split}_questions.json").write_text(
            json.dumps({"questions": questions[split]})
        )
        (out / "vqa" / f"{split}_annotations.json").write_text(
            json.dumps({"annotations": annotations[split]})
        )
    names = {"shape": list(SHAPES), "colour": list(COLOURS), "invented": list(INVENTED.values())}
    for task, splits in classification.items():
        folder = out / "classification" / task
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classnames.json").write_text(json.dumps(names[task]))
        for split, rows in splits.items():
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
