"""Numerics unchanged by the speed-ups: 20 steps with every one on (the feature cache warm,
fused AdamW) against the plain fp32 path (no cache, PyTorch's per-parameter AdamW); the attention
kernel choice; bf16 steps within bf16 tolerance of fp32 ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import base_spec

from workbench.model import resampler
from workbench.model.resampler import attend
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


def test_attention_takes_matmuls_in_half_precision_on_the_cpu_and_agrees(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 16, generator=generator) for _ in range(3))
    q, k, v = q, k.repeat(1, 1, 2, 1), v.repeat(1, 1, 2, 1)  # 5 queries over 10 keys
    mask = torch.rand(2, 1, 5, 10, generator=generator) > 0.4
    mask[..., 0] = True  # every row may attend somewhere
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(attend(q, k, v, mask), exact)  # fp32: the fused kernel itself
    fused_calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(resampler.F, "scaled_dot_product_attention",
                        lambda *a, **kw: fused_calls.append(1) or real(*a, **kw))  # fmt: skip
    half = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert not fused_calls and half.dtype == torch.bfloat16
    assert half.float() == pytest.approx(exact, abs=3e-2)
    mask[..., 7:] = False  # the last three keys are out of every query's reach
    moved = v.clone()
    moved[:, :, 7:] += 100.0
    masked = attend(q.bfloat16(), k.bfloat16(), moved.bfloat16(), mask)
    assert masked.float() == pytest.approx(attend(q, k, v, mask), abs=3e-2)


def test_bf16_steps_stay_within_bf16_tolerance_of_fp32(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"],
                     **{"train.steps": 20, "train.checkpoint_every": 0})  # fmt: skip
    quiet = {"show_progress": False, "track": False}
    fp32 = train(spec, home=tmp_path / "fp32", **quiet)
    bf16 = train(spec.override({"train.precision": "bf16"}), home=tmp_path / "bf16", **quiet)
    for key in ("loss", "loss/laion", "loss/mmc4"):
        reference = [h[key] for h in fp32.history]
        assert [h[key] for h in bf16.history] == pytest.approx(reference, rel=1e-2), key
