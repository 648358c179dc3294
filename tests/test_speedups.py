"""Numerics unchanged by the speed-ups: 20 steps with every one on (the feature cache warm,
fused AdamW) against the plain fp32 path (no cache, PyTorch's per-parameter AdamW)."""

from __future__ import annotations

import pytest
import torch
from helpers import base_spec

from workbench.train import loop
from workbench.train.loop import train
from workbench.train.optim import parameter_groups


def test_twenty_steps_with_every_speed_up_match_the_plain_path(
    tiny_world, tiny_lm_dirs, tmp_path, monkeypatch
):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"],
                     **{"train.steps": 20, "train.checkpoint_every": 0})  # fmt: skip
    quiet = {"show_progress": False, "track": False}
    fast_home = tmp_path / "fast"
    train(spec, home=fast_home, **quiet)  # fills the cache
    fast = train(spec.override({"name": "warm"}), home=fast_home, **quiet)
    assert fast.history[-1]["features/hit_rate"] == 1.0
    assert loop.build_optimizer(torch.nn.Linear(2, 2), 1e-3, 0.1).defaults["fused"] is True
    optimizers = []

    def plain(model, lr, weight_decay):
        optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, foreach=False)
        optimizers.append(optimizer)
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", plain)
    slow = train(spec.override({"train.feature_cache": False}), home=tmp_path / "plain", **quiet)
    assert len(optimizers) == 1 and not optimizers[0].defaults["fused"]
    for key in ("loss", "loss/laion", "loss/mmc4", "grad_norm"):
        reference = [h[key] for h in slow.history]
        assert [h[key] for h in fast.history] == pytest.approx(reference, abs=1e-5, rel=0), key


def test_compiled_blocks_compute_the_same_losses(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"],
                     **{"train.steps": 3, "train.checkpoint_every": 0})  # fmt: skip
    quiet = {"show_progress": False, "track": False}
    eager = train(spec, home=tmp_path / "eager", **quiet)
    compiled = train(spec.override({"train.compile": True}), home=tmp_path / "compiled", **quiet)
    assert compiled.model is not None
    layers = [m for m in compiled.model.modules() if type(m).__name__ == "FlamingoDecoderLayer"]
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    for key in ("loss", "loss/laion", "loss/mmc4"):
        reference = [h[key] for h in eager.history]
        assert [h[key] for h in compiled.history] == pytest.approx(reference, abs=1e-5, rel=0)
