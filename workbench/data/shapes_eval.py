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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data.scenes import COLOURS, SHAPES, caption, questions_for, random_scene, render

INVENTED = dict(zip(SHAPES, ("blicket", "dax", "wug", "fep", "toma", "zorp", "kiki"), strict=True))


def _answers(answer: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Ten annotator answers: the true one, with an occasional variant spelling."""
    variants = {"1": "one", "2": "two", "3": "three", "centre": "center"}
    answers = [
        variants[answer] if answer in variants and rng.random() < 0.2 else answer for _ in range(10)
    ]
    return [
        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
    ]


_SPLITS = ("train", "test")
_CLASSIFICATION_TASKS = ("shape", "colour", "invented")


@dataclass
class _Records:
    """What the evaluation files list, by split, in the order the images were drawn."""

    karpathy: list[dict[str, Any]] = field(default_factory=list)
    questions: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {split: [] for split in _SPLITS}
    )
    annotations: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {split: [] for split in _SPLITS}
    )
    classification: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: {task: {s: [] for s in _SPLITS} for task in _CLASSIFICATION_TASKS}
    )


def write_eval_sets(out_dir: str | Path, n: int, seed: int = 0, image_size: int = 64) -> Path:
    """Writes ``n`` test and ``n`` query (train) images per task family; returns ``out_dir``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    records = _Records()
    image_id = 0
    for split in _SPLITS:
        for _ in range(n):
            image_id += 1
            _add_scene(records, split, image_id, out / "images", rng, image_size)
            _add_single_object(records, split, image_id, out / "images", rng, image_size)
    _write(records, out)
    return out


def _add_scene(
    records: _Records,
    split: str,
    image_id: int,
    images: Path,
    rng: np.random.Generator,
    image_size: int,
) -> None:
    """A scene of 1-3 objects: five reference captions and its questions."""
    scene = random_scene(rng)
    name = f"shapes_{image_id:06d}.png"
    render(scene, image_size, seed=image_id).save(images / name)
    refs = [caption(scene, rng) for _ in range(5)]
    records.karpathy.append({
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
        records.questions[split].append(
            {"image_id": image_id, "question": question, "question_id": qid}
        )
        records.annotations[split].append({
            "image_id": image_id, "question_id": qid, "answer_type": kind,
            "question_type": question.split()[0].lower(), "multiple_choice_answer": answer,
            "answers": _answers(answer, rng),
        })  # fmt: skip


def _add_single_object(
    records: _Records,
    split: str,
    image_id: int,
    images: Path,
    rng: np.random.Generator,
    image_size: int,
) -> None:
    """One object, labelled by its shape, its colour and its shape's invented word."""
    single = random_scene(rng, num_objects=1)
    obj = single.objects[0]
    name = f"single_{image_id:06d}.png"
    render(single, image_size, seed=image_id).save(images / name)
    labels = {"shape": obj.shape, "colour": obj.colour, "invented": INVENTED[obj.shape]}
    for task in _CLASSIFICATION_TASKS:
        records.classification[task][split].append(
            {"id": image_id, "image": f"images/{name}", "label": labels[task]}
        )


def _write(records: _Records, out: Path) -> None:
    (out / "captioning").mkdir(exist_ok=True)
    (out / "captioning" / "karpathy_shapes.json").write_text(
        json.dumps({"images": records.karpathy, "dataset": "shapes"})
    )
    (out / "vqa").mkdir(exist_ok=True)
    for split in _SPLITS:
        (out / "vqa" / f"{split}_questions.json").write_text(
            json.dumps({"questions": records.questions[split]})
        )
        (out / "vqa" / f"{split}_annotations.json").write_text(
            json.dumps({"annotations": records.annotations[split]})
        )
    names = {"shape": list(SHAPES), "colour": list(COLOURS), "invented": list(INVENTED.values())}
    for task, splits in records.classification.items():
        folder = out / "classification" / task
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classnames.json").write_text(json.dumps(names[task]))
        for split, rows in splits.items():
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
