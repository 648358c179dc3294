"""The special rows' options: where they train, how they start, their own learning rate."""

from __future__ import annotations

import pytest
import torch
from helpers import base_spec, build

from workbench.model.embeddings import SpecialTokenHead, Trainable, initial_rows
from workbench.train.loop import train
from workbench.train.optim import parameter_groups


def test_initial_rows_by_hand():
    table = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [9.0, 9.0]])
    ids = torch.tensor([3])
    assert initial_rows(table, ids, None).tolist() == [[9.0, 9.0]]  # as the resize left it
    assert initial_rows(table, ids, "mean").tolist() == [[3.0, 4.0]]  # the other rows' mean
    assert initial_rows(table, ids, "copy", copy_of=0).tolist() == [[1.0, 2.0]]
    random = initial_rows(table, ids, "random")
    assert random.shape == (1, 2) and not torch.equal(random, torch.tensor([[3.0, 4.0]]))
    assert torch.equal(random, initial_rows(table, ids, "random"))  # seeded
    with pytest.raises(ValueError, match="init must be one of"):
        initial_rows(table, ids, "zeros")


def test_input_only_leaves_the_head_alone(tiny_lm_dirs):
    model, _ = build(tiny_lm_dirs["gpt_neox"], special_embeddings=Trainable(output=False))
    assert not isinstance(model.lang_model.get_output_embeddings(), SpecialTokenHead)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and "special" in n]
    assert len(trainable) == 1 and "embed" in trainable[0]
    both, _ = build(tiny_lm_dirs["gpt_neox"])
    assert isinstance(both.lang_model.get_output_embeddings(), SpecialTokenHead)


def test_the_new_rows_learn_at_their_own_rate(tiny_world, tiny_lm_dirs, tmp_path):
    one_step = {"train.steps": 1, "train.checkpoint_every": 0, "train.schedule.warmup_steps": 1}
    spec = base_spec(tiny_world, tiny_lm_dirs["gpt_neox"], **one_step)
    moved = {}
    for scale in (1.0, 10.0):
        changes = {"model.special_embeddings.lr_scale": scale}
        run = spec.override(changes)
        before = build(tiny_lm_dirs["gpt_neox"])[0]  # the factory's starting rows (seed 0)
        start = before.lang_model.get_input_embeddings().special.detach().clone()
        result = train(run, home=tmp_path / str(scale), show_progress=False, track=False)
        assert result.model is not None
        groups = parameter_groups(result.model, 0.1)
        assert groups[-1]["lr_scale"] == scale
        end = result.model.lang_model.get_input_embeddings().special.detach()
        moved[scale] = float((end - start).abs().max())
    # Adam's first step moves every element by about lr (times the scale), whatever its gradient
    assert moved[1.0] == pytest.approx(spec.train.lr, rel=0.05)
    assert moved[10.0] == pytest.approx(10 * spec.train.lr, rel=0.05)
