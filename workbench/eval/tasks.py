"""Evaluation datasets in the real benchmarks' standard files, and the ``task`` component.

Loaders (each returns a :class:`Dataset` with a query set, from which demonstrations are drawn,
and a test set):

- :func:`karpathy_captions`: COCO or Flickr30K Karpathy json (``images[].sentences[].raw``);
- :func:`coco_captions`: COCO-format caption files (``captions_*.json``: ``images[]`` with
  ``id`` and ``file_name``, ``annotations[]`` with ``image_id`` and ``caption``);
- :func:`vqa_questions`: VQAv2 questions + annotations json, which OK-VQA, TextVQA and VizWiz
  also use;
- :func:`jsonl_classification`: jsonl of ``{id, img|image, label[, text]}`` (Hateful Memes) with
  the class names.

The shapes world writes its evaluation sets in these formats (``write_eval_sets``); the registered
tasks read them from one directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from workbench.registry import Registry

Kind = Literal["captioning", "vqa", "classification"]


@dataclass(frozen=True)
class Item:
    """One example: an image, the question (VQA), and the reference answers.

    ``answers``: the reference captions (captioning), the annotators' answers (VQA), or the one
    label (classification). ``question_type`` and ``answer_type``: the VQA annotation's, which
    the per-type breakdowns use ("other" where the annotation has none).
    """

    id: str
    image: Path
    answers: tuple[str, ...]
    question: str = ""
    text: str = ""  # extra text of the example (Hateful Memes' caption)
    question_type: str = ""
    answer_type: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: Kind
    query: list[Item]
    test: list[Item]
    classnames: tuple[str, ...] = ()
    max_new_tokens: int = 20
    metric: str = ""  # the headline metric's name
    # VQA answered by ranking the closed answer set of each question's type (workbench.eval.rank)
    # instead of generating
    closed_set: bool = False

    def __post_init__(self) -> None:
        if not self.query or not self.test:
            raise ValueError(f"{self.name}: empty query or test set")
        if self.kind == "classification" and len(self.classnames) < 2:
            raise ValueError(f"{self.name}: classification needs at least two class names")


def fixed_subset(dataset: Dataset, subset: int | None = None, seed: int = 0) -> list[Item]:
    """The first ``subset`` test examples (all if None) of a fixed shuffle: the same examples in
    every trial and for the majority baseline."""
    test = list(dataset.test)
    order = np.random.default_rng([seed, 7]).permutation(len(test))
    return [test[i] for i in order[: subset or len(test)]]


def load_image(path: Path) -> Image.Image:
    """An example's image as RGB (the file is closed on return)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def _read_json(path: str | Path) -> object:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"evaluation file {path} does not exist")
    return json.loads(path.read_text())


def karpathy_captions(
    annotations: str | Path, images: str | Path, name: str = "coco", test_split: str = "test"
) -> Dataset:
    """COCO/Flickr30K Karpathy json; the query set is the ``train`` (and ``restval``) split."""
    data = _read_json(annotations)
    root = Path(images)
    query, test = [], []
    for entry in data["images"]:  # type: ignore[index]
        path = root / entry.get("filepath", "") / entry["filename"]
        item = Item(
            str(entry.get("cocoid", entry.get("imgid", entry["filename"]))),
            path,
            tuple(s["raw"] for s in entry["sentences"]),
        )
        if entry["split"] in ("train", "restval"):
            query.append(item)
        elif entry["split"] == test_split:
            test.append(item)
    return Dataset(name, "captioning", query, test, max_new_tokens=20, metric="cider")


def coco_captions(
    query_annotations: str | Path,
    test_annotations: str | Path,
    query_images: str | Path,
    test_images: str | Path | None = None,
    name: str = "coco",
) -> Dataset:
    """COCO-format caption files, e.g. ``captions_train2014.json`` for the query set and
    ``captions_val2014.json`` for the test set; an image's captions in the file's order, images
    without a caption left out.

    Args:
        test_images: the test images' folder (``query_images`` if None).
    """

    def load(annotations: str | Path, images: str | Path) -> list[Item]:
        data = _read_json(annotations)
        captions: dict[object, list[str]] = {}
        for a in data["annotations"]:  # type: ignore[index]
            captions.setdefault(a["image_id"], []).append(a["caption"])
        return [
            Item(str(entry["id"]), Path(images) / entry["file_name"], tuple(captions[entry["id"]]))
            for entry in data["images"]  # type: ignore[index]
            if entry["id"] in captions
        ]

    query = load(query_annotations, query_images)
    test = load(test_annotations, query_images if test_images is None else test_images)
    return Dataset(name, "captioning", query, test, max_new_tokens=20, metric="cider")


def vqa_questions(
    query_questions: str | Path,
    query_annotations: str | Path,
    test_questions: str | Path,
    test_annotations: str | Path,
    images: str | Path,
    image_name: str | Callable[[int | str], str] = "COCO_val2014_{image_id:012d}.jpg",
    name: str = "vqav2",
    max_new_tokens: int = 5,
) -> Dataset:
    """VQAv2-format questions and annotations (also OK-VQA, TextVQA, VizWiz).

    Args:
        image_name: a format string of ``image_id`` or a function of it giving the file name.
    """
    namer = image_name if callable(image_name) else (lambda i: image_name.format(image_id=i))

    def load(questions: str | Path, annotations: str | Path) -> list[Item]:
        by_id = {a["question_id"]: a for a in _read_json(annotations)["annotations"]}  # type: ignore[index]
        items = []
        for q in _read_json(questions)["questions"]:  # type: ignore[index]
            annotation = by_id[q["question_id"]]
            items.append(Item(
                str(q["question_id"]), Path(images) / namer(q["image_id"]),
                tuple(x["answer"] for x in annotation["answers"]), question=q["question"],
                question_type=annotation.get("question_type", "other"),
                answer_type=annotation.get("answer_type", "other"),
            ))  # fmt: skip
        return items

    return Dataset(
        name,
        "vqa",
        load(query_questions, query_annotations),
        load(test_questions, test_annotations),
        max_new_tokens=max_new_tokens,
        metric="vqa_accuracy",
    )


def jsonl_classification(
    query: str | Path,
    test: str | Path,
    images: str | Path,
    classnames: list[str] | str | Path,
    name: str = "hateful_memes",
) -> Dataset:
    """jsonl rows ``{id, img|image, label[, text]}``; an integer label indexes ``classnames``
    (Hateful Memes: 0 = "no", 1 = "yes"), a string label is the class name."""
    names = (
        tuple(classnames) if isinstance(classnames, list) else tuple(_read_json(classnames))  # type: ignore[arg-type]
    )

    def load(path: str | Path) -> list[Item]:
        if not Path(path).exists():
            raise FileNotFoundError(f"evaluation file {path} does not exist")
        items = []
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            label = row["label"]
            label = names[label] if isinstance(label, int) else str(label)
            if label not in names:
                raise ValueError(f"{path}: label {label!r} is not one of {list(names)}")
            image = row.get("img", row.get("image"))
            items.append(
                Item(str(row["id"]), Path(images) / image, (label,), text=row.get("text", ""))
            )
        return items

    metric = "roc_auc" if len(names) == 2 else "accuracy"
    return Dataset(name, "classification", load(query), load(test), names, metric=metric)


# --- the ``task`` component: a dataset read from an evaluation directory -----------------------


@dataclass(frozen=True)
class Task:
    """A registered evaluation task: how to load its dataset from an evaluation directory."""

    load: Callable[[Path], Dataset]
    doc: str = ""


TASKS: Registry[Task] = Registry("task")


def _shapes_vqa(root: Path) -> Dataset:
    vqa = root / "vqa"
    return vqa_questions(
        vqa / "train_questions.json", vqa / "train_annotations.json",
        vqa / "test_questions.json", vqa / "test_annotations.json",
        root / "images", image_name="shapes_{image_id:06d}.png", name="vqa",
    )  # fmt: skip


def _shapes_classification(task: str) -> Callable[[Path], Dataset]:
    def load(root: Path) -> Dataset:
        folder = root / "classification" / task
        return jsonl_classification(
            folder / "train.jsonl", folder / "test.jsonl", root, folder / "classnames.json",
            name=f"classification_{task}",
        )  # fmt: skip

    return load


TASKS.add(
    "captioning",
    Task(
        lambda root: karpathy_captions(
            root / "captioning" / "karpathy_shapes.json", root, name="captioning"
        ),
        "COCO-style captioning (CIDEr) from captioning/karpathy_shapes.json",
    ),
)
TASKS.add("vqa", Task(_shapes_vqa, "VQAv2-style questions (VQA accuracy) from vqa/"))
TASKS.add(
    "vqa_rank",
    Task(
        lambda root: replace(
            _shapes_vqa(root), name="vqa_rank", closed_set=True, metric="rank_accuracy"
        ),
        "the VQA questions answered by ranking their type's closed answer set (accuracy; the "
        "right answer's log-likelihood per item)",
    ),
)
for _task in ("shape", "colour", "invented"):
    TASKS.add(
        f"classification_{_task}",
        Task(_shapes_classification(_task), f"single objects labelled by {_task} (accuracy)"),
    )


def load_task(name: str, root: str | Path) -> Dataset:
    """The dataset of the registered task ``name`` under the evaluation directory ``root``."""
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(
            f"evaluation directory {path} does not exist (the shapes world writes one under "
            "<world>/eval; set eval.data)"
        )
    return TASKS.get(name).load(path)
