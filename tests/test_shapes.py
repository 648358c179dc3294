"""The shapes world: deterministic shards, calibrated MMC4 similarities, standard eval files."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest

from workbench.data.scenes import COLOURS, SHAPES
from workbench.data.shapes import write_shapes_world
from workbench.data.shapes_eval import INVENTED
from workbench.data.stats import mmc4_threshold_table, plot_threshold_table


def digest(paths) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()


def test_the_world_is_a_function_of_its_seed(tmp_path):
    a = write_shapes_world(tmp_path / "a", n_pairs=60, n_docs=30, n_eval=0, seed=7, per_shard=25)
    b = write_shapes_world(tmp_path / "b", n_pairs=60, n_docs=30, n_eval=0, seed=7, per_shard=25)
    c = write_shapes_world(tmp_path / "c", n_pairs=60, n_docs=30, n_eval=0, seed=8, per_shard=25)
    assert len(a["laion"]) == 3 and len(a["mmc4"]) == 2
    for source in ("laion", "mmc4"):
        assert digest(a[source]) == digest(b[source]) != digest(c[source])


@pytest.mark.slow
def test_oracle_similarities_reproduce_mmc4_discard_rates(tmp_path):
    shards = write_shapes_world(tmp_path, n_pairs=0, n_docs=1500, n_eval=0, image_size=16)["mmc4"]
    table = mmc4_threshold_table([str(p) for p in shards], [0.24, 0.28, 0.32])
    lost = dict(zip(table["threshold"], table["docs_losing_all_images"], strict=True))
    assert 0.37 <= lost[0.24] <= 0.49  # MMC4: 42.7%
    assert 0.85 <= lost[0.32] <= 0.92  # MMC4: 88.7%
    assert lost[0.24] < lost[0.28] < lost[0.32]
    shares = table.select(pl.col(f"docs_with_{k}_images") for k in range(1, 7)).sum_horizontal()
    assert shares.to_list() == pytest.approx([1.0, 1.0, 1.0])
    png = plot_threshold_table(table, tmp_path / "thresholds.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_evaluation_sets_follow_the_standard_formats(tmp_path):
    write_shapes_world(tmp_path, n_pairs=0, n_docs=0, n_eval=12)
    root = tmp_path / "eval"
    karpathy = json.loads((root / "captioning" / "karpathy_shapes.json").read_text())["images"]
    assert {im["split"] for im in karpathy} == {"train", "test"} and len(karpathy) == 24
    assert all(len(im["sentences"]) == 5 for im in karpathy)
    assert all((root / im["filepath"] / im["filename"]).exists() for im in karpathy)

    questions = json.loads((root / "vqa" / "test_questions.json").read_text())["questions"]
    annotations = json.loads((root / "vqa" / "test_annotations.json").read_text())["annotations"]
    assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
    assert all(len(a["answers"]) == 10 for a in annotations)
    kinds = {q["question"].split()[0] for q in questions}
    assert {"How", "Is"} <= kinds and kinds & {"What", "Where"}
    yes_no = [a["multiple_choice_answer"] for a in annotations if a["answer_type"] == "yes/no"]
    assert set(yes_no) <= {"yes", "no"}

    for task, names in (("shape", SHAPES), ("colour", COLOURS), ("invented", INVENTED.values())):
        folder = root / "classification" / task
        assert json.loads((folder / "classnames.json").read_text()) == list(names)
        rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
        assert len(rows) == 12 and all(r["label"] in names for r in rows)
        assert all((root / r["image"]).exists() for r in rows)
