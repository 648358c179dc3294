"""Few-shot evaluation: metrics on hand-made cases, dataset loaders, prompts, RICES, the
zero-gate model ignoring images, a group of ranks scoring like one process, the spec-level entry
points, and evaluation through the CLI into MLflow."""

from __future__ import annotations

import copy
import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers import base_spec
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from workbench.cli import app
from workbench.eval.fewshot import (
    MEDIA,
    Rices,
    _predict,
    evaluate,
    majority_baseline,
    postprocess,
    prompt,
)
from workbench.eval.group import Group
from workbench.eval.metrics import (
    accuracy,
    cider,
    java_available,
    normalize_answer,
    roc_auc,
    vqa_accuracy,
)
from workbench.eval.run import Evaluator, check_eval_spec, evaluate_tasks
from workbench.eval.tasks import TASKS, jsonl_classification, load_task
from workbench.model import create_model_and_transforms
from workbench.spec import EvalSpec, SpecError
from workbench.track import default_uri
from workbench.train.loop import train


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("red", ["red"] * 10, 1.0),
        (
            "red",
            ["red"] * 3 + ["blue"] * 7,
            0.9,
        ),  # 7 subsets keep 3 reds, 3 keep 2: (7 + 3 * 2/3) / 10
        ("red", ["red"] * 2 + ["blue"] * 8, 0.6),  # (8 * 2/3 + 2 * 1/3) / 10
        ("red", ["red"] + ["blue"] * 9, 0.3),  # 9 subsets with one match: 9 * 1/3 / 10
        ("green", ["red"] * 10, 0.0),
        ("Two", ["2"] * 10, 1.0),  # number words
        ("the dog.", ["dog"] * 10, 1.0),  # articles and punctuation
        ("Yes!", ["yes"] * 10, 1.0),  # case and punctuation
    ],
)
def test_vqa_accuracy_known_values(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


def test_answer_normalisation():
    assert normalize_answer("The Red, square!") == "red square"
    assert normalize_answer("1,000") == "1000"
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("  an apple\n") == "apple"
    assert normalize_answer("dont") == "don't"  # contractions spelled without the apostrophe


def test_cider_known_values():
    refs = {"a": ["a red square on the left"], "b": ["two green stars at the top"]}
    exact, _ = cider({"a": refs["a"][0], "b": refs["b"][0]}, refs, tokenizer="simple")
    assert exact == pytest.approx(10.0)  # every n-gram matches, idf > 0: 10 x mean cosine 1
    unrelated, _ = cider({"a": "blue circle", "b": "pink ring"}, refs, tokenizer="simple")
    assert unrelated == 0.0
    if java_available():  # the COCO server's tokenizer agrees on plain captions
        ptb, used = cider({"a": "A red square, on the left.", "b": "pink ring"}, refs)
        simple, _ = cider({"a": "A red square, on the left.", "b": "pink ring"}, refs, "simple")
        assert used == "ptb" and ptb == pytest.approx(simple)


def test_classification_metrics():
    assert accuracy(["a", "b", "b"], ["a", "b", "a"]) == pytest.approx(2 / 3)
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5  # ties count half
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [True, True])


def test_loaders_read_the_standard_formats(tiny_world, tmp_path):
    root = tiny_world["eval"]
    captions = load_task("captioning", root)
    assert len(captions.test) == 24 and all(len(it.answers) == 5 for it in captions.test)
    assert all(it.image.exists() for it in captions.query + captions.test)
    vqa = load_task("vqa", root)
    assert vqa.kind == "vqa" and all(len(it.answers) == 10 for it in vqa.test)
    assert vqa.test[0].question.endswith("?") and vqa.test[0].image.exists()
    colour = load_task("classification_colour", root)
    assert colour.metric == "accuracy" and colour.test[0].answers[0] in colour.classnames
    assert set(TASKS.names()) >= {"captioning", "vqa", "classification_shape"}
    # Hateful Memes rows: integer labels, text on the image, a binary task scored by ROC AUC
    rows = [{"id": i, "img": "images/" + captions.test[i].image.name, "label": i % 2,
             "text": "hello"} for i in range(4)]  # fmt: skip
    (tmp_path / "memes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    memes = jsonl_classification(
        tmp_path / "memes.jsonl", tmp_path / "memes.jsonl", root, ["no", "yes"]
    )
    assert memes.metric == "roc_auc" and memes.test[1].answers == ("yes",)
    assert "Is it hateful? Answer:" in prompt(memes, memes.query[:1], memes.test[0], False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_task("vqa", tmp_path / "missing")


def test_prompts_follow_the_reference(tiny_world):
    vqa = load_task("vqa", tiny_world["eval"])
    demos, query = vqa.query[:2], vqa.test[0]
    text = prompt(vqa, demos, query, text_only_demos=False)
    lines = text.split("\n")
    assert (
        lines[0]
        == f"<image>Question:{demos[0].question} Short answer:{demos[0].answers[0]}<|endofchunk|>"
    )
    assert lines[-1] == f"<image>Question:{query.question} Short answer:"
    zero = prompt(vqa, demos, query, text_only_demos=True)  # 0-shot: two text-only demos
    assert zero.count(MEDIA) == 1 and zero.endswith("Short answer:")
    assert postprocess(vqa, "red. The next Question:", "</s>") == "red. The next"  # reference
    assert postprocess(vqa, "left</s>blah", "</s>") == "left"


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_dirs):
    torch.manual_seed(0)
    model, processor, tokenizer = create_model_and_transforms(
        "wb-tiny-vit", str(tiny_lm_dirs["llama"]), xattn_heads=2, xattn_dim_head=16
    )
    return model.eval(), processor, tokenizer


def test_a_zero_gate_model_captions_every_image_alike(tiny_model, tiny_world):
    model, processor, tokenizer = tiny_model
    captions = load_task("captioning", tiny_world["eval"])
    batch = captions.test[:4]  # different images, the same demonstrations
    demos = [captions.query[:2]] * 4
    assert all(float(b.attn_gate.detach()) == 0 for b in model.xattn_blocks().values())
    outputs = _predict(model, tokenizer, processor, captions, batch, demos, 2, 3, None)
    assert len(set(outputs)) == 1 and outputs[0]  # the images change nothing
    with torch.no_grad():  # with open gates the images reach the text
        for block in model.xattn_blocks().values():
            block.attn_gate.fill_(1.0)
            block.ff_gate.fill_(1.0)
    try:
        opened = _predict(model, tokenizer, processor, captions, batch, demos, 2, 3, None)
        assert len(set(opened)) > 1
    finally:
        with torch.no_grad():
            for block in model.xattn_blocks().values():
                block.attn_gate.zero_()
                block.ff_gate.zero_()


def test_rices_puts_the_most_similar_example_last(tiny_model, tiny_world):
    model, processor, _ = tiny_model
    vqa = load_task("vqa", tiny_world["eval"])
    query = vqa.query[:12]
    rices = Rices(model, processor, query)
    chosen = rices.demos([query[5]], k=3)[0]
    assert chosen[-1].image == query[5].image  # the test image itself is the most similar


def test_evaluate_gives_trials_mean_and_std(tiny_model, tiny_world):
    model, processor, tokenizer = tiny_model
    vqa = load_task("vqa", tiny_world["eval"])
    result = evaluate(model, tokenizer, processor, vqa, 2, trials=2, subset=5, batch_size=3)
    assert result.key == "eval/vqa/2shot" and result.n == 5 and len(result.trials) == 2
    assert 0.0 <= result.mean <= 1.0 and result.std >= 0.0
    items = result.table()  # every question of every trial; a trial's score is their mean
    means = [items.filter(items["trial"] == t)["score"].mean() for t in (0, 1)]
    assert items.height == 10 and means == pytest.approx(result.trials)
    colour = load_task("classification_colour", tiny_world["eval"])
    scored = evaluate(model, tokenizer, processor, colour, 0, trials=1, subset=4, demos="rices")
    assert 0.0 <= scored.mean <= 1.0
    assert 0.0 < majority_baseline(vqa) < 1.0


def test_a_group_of_two_ranks_scores_like_one_process(tiny_model, tiny_world):
    model, processor, tokenizer = tiny_model
    colour = load_task("classification_colour", tiny_world["eval"])
    options = {"trials": 2, "subset": 5, "batch_size": 1}  # one item a batch: the same passes
    alone = evaluate(model, tokenizer, processor, colour, 1, **options)
    assert Group().all("x") == ["x"]
    slots: list[object] = [None, None]
    barrier = threading.Barrier(2, timeout=120)
    results: list[object] = [None, None]

    def gather(rank: int, obj: object) -> list[object]:
        slots[rank] = obj
        barrier.wait()
        every = list(slots)
        barrier.wait()  # nobody overwrites a slot before both have read them
        return every

    def rank(r: int) -> None:
        group = Group(r, 2, gather=lambda obj: gather(r, obj))
        try:  # a process each: its own model (media state) and tokenizer
            own = copy.deepcopy(model), copy.deepcopy(tokenizer)
            results[r] = evaluate(own[0], own[1], processor, colour, 1, group=group, **options)
        except BaseException:
            barrier.abort()  # the other rank stops waiting
            raise

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:  # rank 1 has two items and a padding one; each item counts once
        assert result == alone


def test_check_eval_spec_names_each_mistake(tiny_world, tmp_path):
    check_eval_spec(EvalSpec())  # never evaluating needs nothing
    good = EvalSpec(every=2, tasks=("vqa",), data=tiny_world["eval"])
    check_eval_spec(good)
    cases = [
        (EvalSpec(every=-1), "eval.every must be >= 0"),
        (replace(good, tasks=()), r"eval.every > 0 needs eval.tasks \(with eval.data\) or eval"),
        (replace(good, data=""), r"eval.tasks need eval.data \(an eval directory\)"),
        (replace(good, tasks=("vqa", "nope")), r"eval.tasks: unknown \['nope'\]; valid: \["),
        (replace(good, data=str(tmp_path / "missing")), "eval.data: .*missing is not a directory"),
    ]
    for spec, message in cases:
        with pytest.raises(SpecError, match=message):
            check_eval_spec(spec)
    check_eval_spec(replace(good, tasks=(), data="", validation=tiny_world["validation"]))


def test_the_evaluator_is_due_every_few_steps_and_at_the_end(tiny_model, tiny_world):
    off = Evaluator(EvalSpec(), None, None, None)
    assert not off.enabled and not off.due(0, 10) and off() == {}
    model, processor, tokenizer = tiny_model
    spec = EvalSpec(every=4, tasks=("classification_shape",), data=tiny_world["eval"],
                    shots=(0,), subset=2)  # fmt: skip
    on = Evaluator(spec, model, tokenizer, processor)
    assert on.enabled and [s for s in range(11) if on.due(s, 10)] == [0, 4, 8, 10]
    shape = load_task("classification_shape", tiny_world["eval"])
    direct = evaluate(model, tokenizer, processor, shape, 0, trials=1, subset=2)
    assert on() == {"eval/classification_shape/0shot": direct.mean}


def test_evaluate_tasks_gives_a_line_per_task_and_shot(tiny_model, tiny_world):
    model, processor, tokenizer = tiny_model
    root = Path(tiny_world["eval"])
    scores = evaluate_tasks(model, tokenizer, processor, root, ["classification_colour", "vqa"],
                            [0, 1], trials=2, subset=2, demos="random")  # fmt: skip
    assert [(s.task, s.shots) for s in scores] == [
        ("classification_colour", 0), ("classification_colour", 1), ("vqa", 0), ("vqa", 1),
    ]  # fmt: skip
    last = scores[-1]
    assert last.majority == majority_baseline(load_task("vqa", root), 2)
    assert last.line() == (
        f"vqa 1-shot vqa_accuracy: {last.result.mean:.4f} ± {last.result.std:.4f} over 2 trials, "
        f"2 examples (majority answer: {last.majority:.4f})"
    )
    with pytest.raises(SpecError, match="demos: 'best' is not random or rices"):
        evaluate_tasks(model, tokenizer, processor, root, ["vqa"], [0], trials=1, subset=1,
                       demos="best")  # fmt: skip


def test_training_evaluates_periodically_and_wb_eval_logs_to_the_run(
    tiny_world, tiny_lm_dirs, tmp_path
):
    spec = base_spec(
        tiny_world, tiny_lm_dirs["llama"],
        **{"train.steps": 2, "eval.every": 2, "eval.data": tiny_world["eval"],
           "eval.tasks": "vqa,classification_shape", "eval.shots": "0,2", "eval.subset": 3},
    )  # fmt: skip
    result = train(spec, home=tmp_path, show_progress=False)
    assert math.isfinite(result.history[-1]["eval/vqa/2shot"])
    uri = default_uri(tmp_path)
    client = MlflowClient(uri)
    steps = [
        m.step for m in client.get_metric_history(result.run_id, "eval/classification_shape/0shot")
    ]
    assert steps == [0, 2]  # before training and at the end

    out = CliRunner().invoke(
        app,
        ["eval", str(result.run_dir), "--task", "vqa", "--shots", "0", "--trials", "2",
         "--subset", "4", "--home", str(tmp_path)],
        catch_exceptions=False,
    )  # fmt: skip
    assert out.exit_code == 0 and "vqa 0-shot vqa_accuracy" in out.output
    assert "majority answer" in out.output
    history = client.get_metric_history(result.run_id, "eval/vqa/0shot")
    assert [m.step for m in history].count(2) == 2  # the training-time value and wb eval's
    # per-item results: artifacts of the run, from training (steps 0 and 2) and from wb eval
    logged = [a.path for a in client.list_artifacts(result.run_id, "eval")]
    assert len(logged) == 2 * 2 * 2 + 1 and all(p.endswith(".parquet") for p in logged)
    mine = next(p for p in logged if "vqa" in p and "0shot" in p and "step" not in p)
    items = pl.read_parquet(client.download_artifacts(result.run_id, mine, str(tmp_path)))
    assert items.height == 4 * 2  # 4 questions x 2 trials, each with its own score
    assert {"question_type", "answer_type", "score"} <= set(items.columns)
