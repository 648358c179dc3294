"""Rank classification: the shared-prefix scores equal full forwards, the closed answer sets,
and a VQA task evaluated by ranking (accuracy, the right answer's log-likelihood per item)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import build, images

from workbench.eval.fewshot import evaluate
from workbench.eval.rank import candidate_logliks, candidates_by_type, canonical_answer
from workbench.eval.scoring import majority_baseline
from workbench.eval.tasks import Dataset, Item, load_task
from workbench.model import create_model_and_transforms


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_shared_prefix_scores_equal_one_full_forward_per_candidate(tiny_lm_dirs, family):
    model, tokenizer = build(tiny_lm_dirs[family], open_gates=True)
    prefix = tokenizer("<image>Question:what colour? Short answer:").input_ids
    texts = ("red<|endofchunk|>", "dark blue<|endofchunk|>", "<|endofchunk|>")
    candidates = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
    x, mask = images(1, 1), torch.ones(1, 1, dtype=torch.bool)
    shared = candidate_logliks(model, x, mask, prefix, candidates, pad_token_id=0)
    for candidate, value in zip(candidates, shared, strict=True):
        ids = torch.tensor([prefix + candidate])
        with torch.no_grad():
            logp = model.score(x, mask, ids)  # logp[t] predicts token t + 1
        alone = float(logp[0, len(prefix) - 1 :].sum())
        assert value == pytest.approx(alone, abs=1e-4)
    assert len(set(shared)) == 3  # the candidates really differ
    assert not model.context.active
    with pytest.raises(ValueError, match="at least one token"):
        candidate_logliks(model, x, mask, prefix, [[]], pad_token_id=0)


def item(answers: tuple[str, ...], kind: str = "", qtype: str = "what", id: str = "i") -> Item:
    return Item(id, Path("unused.png"), answers, "q", "", qtype, kind)


def test_closed_answer_sets_are_the_canonical_answers_per_type():
    assert canonical_answer(item(("grey", "gray", "gray"))) == "gray"
    assert canonical_answer(item(("red", "blue"))) == "red"  # a tie: the first given
    query = [item(("red",) * 3, "colour", id="1"), item(("two",) * 3, "count", "how", "2")]
    test = [item(("blue", "blue", "red"), "colour", id="3")]
    dataset = Dataset("v", "vqa", query, test, closed_set=True)
    assert candidates_by_type(dataset) == {"colour/q": ("blue", "red"), "count/q": ("two",)}
    # the query set's most frequent answer to "what" questions is "red": wrong on "blue"
    assert majority_baseline(dataset) == 0.0


def test_vqa_by_ranking_scores_every_item(tiny_lm_dirs, tiny_world):
    torch.manual_seed(0)
    model, processor, tokenizer = create_model_and_transforms(
        "wb-tiny-vit", str(tiny_lm_dirs["llama"]), xattn_heads=2, xattn_dim_head=16
    )
    model.eval()
    ranked = load_task("vqa_rank", tiny_world["eval"])
    assert ranked.closed_set and ranked.metric == "rank_accuracy"
    result = evaluate(model, tokenizer, processor, ranked, 2, trials=1, subset=6, batch_size=4)
    items = result.table()
    assert result.key == "eval/vqa_rank/2shot" and items.height == 6
    answers = candidates_by_type(ranked)
    for row in items.iter_rows(named=True):
        group = f"{row['answer_type']}/{' '.join(row['question'].lower().split()[:2])}"
        assert row["prediction"] in answers[group]
        assert row["score"] == float(row["prediction"] == row["label"])
        assert row["logp_right"] < 0 and row["candidates"] == len(answers[group])
    assert result.mean == pytest.approx(items["score"].mean())
    assert result.details["logp_right"] == pytest.approx(items["logp_right"].mean())
