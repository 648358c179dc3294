"""The analytic FLOP count of a step on a hand-computed case, and the compute a run logs."""

from __future__ import annotations

import pytest
from helpers import base_spec

from workbench.train.flops import FlopCounter, accumulate
from workbench.train.loop import train


def test_a_step_counts_as_the_rule_says():
    sizes = {
        "vision_params": 10,
        "vision_tokens": 5,
        "vision_width": 4,
        "vision_depth": 2,
        "resampler_params": 3,
        "lm_params": 7,
        "xattn_params": 2,
        "hidden": 8,
        "layers": 3,
    }
    counter = FlopCounter(**sizes)
    # two rows of 4 and 2 tokens, 3 images:
    # vision 2*10*3*5 = 300, its attention 4*25*4*2*3 = 2400; resampler 6*3*3*5 = 270;
    # LM 4*7*6 = 168, cross-attention 6*2*6 = 72; self-attention 4*(16+4)*8*3*3 = 5760
    assert counter.step([4, 2], 3) == 300 + 2400 + 270 + 168 + 72 + 5760
    assert counter.step([4, 2], 0) == 168 + 72 + 5760  # text-only: nothing for vision


def test_totals_continue_from_the_previous_step():
    step = {"compute/images": 3.0, "compute/text_tokens": 6.0, "compute/flops": 10.0,
            "time/step_s": 0.5}  # fmt: skip
    first = accumulate(step, None)
    assert first == {"compute/images_seen": 3.0, "compute/tokens_seen": 6.0,
                     "compute/flops_seen": 10.0, "compute/seconds": 0.5}  # fmt: skip
    assert accumulate(step, first)["compute/flops_seen"] == 20.0


def test_a_run_logs_images_tokens_flops_and_seconds(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"],
                     **{"train.steps": 3, "train.checkpoint_every": 0})  # fmt: skip
    result = train(spec, home=tmp_path, show_progress=False, track=False)
    history = result.history
    for key, total in (("compute/images", "compute/images_seen"),
                       ("compute/flops", "compute/flops_seen")):  # fmt: skip
        assert all(h[key] > 0 for h in history)
        assert history[-1][total] == pytest.approx(sum(h[key] for h in history))
    # 4 LAION pairs (one image each) and 2 MMC4 documents (at least one image) a step
    assert all(h["compute/images"] >= 6 for h in history)
    assert history[-1]["compute/seconds"] == pytest.approx(sum(h["time/step_s"] for h in history))
