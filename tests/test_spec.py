"""RunSpec: typed overrides, flattening, canonical JSON and config ids; schedules."""

from __future__ import annotations

import itertools

import pytest

from workbench.data.mixture import Paired, Sampled
from workbench.spec import Choice, RunSpec, SpecError
from workbench.train.optim import SCHEDULES, Constant, Cosine, Linear


def test_flatten_gives_every_leaf_with_choices_by_name():
    flat = RunSpec().flatten()
    assert flat["model.xattn_every"] == 1
    assert flat["data.mixture"] == "paired"
    assert flat["data.mixture.laion_loss_multiplier"] == 0.2
    assert flat["data.mmc4_filter.threshold"] == 0.24
    assert flat["train.schedule"] == "constant" and flat["train.schedule.warmup_steps"] == 1875
    assert flat["model.resampler.num_latents"] == 64
    assert flat["eval.shots"] == [4]
    assert "data.mixture.sources" not in flat  # a class constant, not an option


def test_overrides_check_types_and_keep_the_rest():
    base = RunSpec()
    spec = base.override({"model.xattn_every": 2, "train.lr": 3e-4, "eval.shots": (0, 4)})
    assert spec.model.xattn_every == 2 and spec.train.lr == 3e-4 and spec.eval.shots == (0, 4)
    assert spec.data == base.data and base.model.xattn_every == 1  # frozen: base unchanged
    # command-line strings parse for numbers, booleans, tuples and None
    spec = base.override(
        {"train.steps": "50", "train.lr": "1e-3", "model.only_attend_immediate": "false",
         "eval.shots": "0,4,8", "model.vision_pretrained": "None"}
    )  # fmt: skip
    assert (spec.train.steps, spec.train.lr, spec.model.only_attend_immediate) == (50, 1e-3, False)
    assert spec.eval.shots == (0, 4, 8) and spec.model.vision_pretrained is None
    assert base.override({"train.lr": 1}).train.lr == 1.0  # an int is a fine float


def test_switching_a_component_starts_from_its_defaults():
    spec = RunSpec().override({"data.mixture": "sampled", "data.mixture.mmc4_probability": 0.3})
    assert spec.data.mixture == Choice("mixture", "sampled", Sampled(mmc4_probability=0.3))
    spec = RunSpec().override({"data.mixture.laion_batch_size": 8})
    assert spec.data.mixture.options == Paired(laion_batch_size=8)
    spec = RunSpec().override({"train.schedule": "cosine", "train.schedule.final_fraction": 0.1})
    assert spec.train.schedule.options == Cosine(final_fraction=0.1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.xattn_evry": 2}, "unknown key 'model.xattn_evry'. Did you mean xattn_every"),
        ({"model.xattn_every": 1.5}, "model.xattn_every: expected int, got 1.5"),
        ({"model.xattn_every": True}, "expected int"),
        ({"train.precision": "fp16"}, r"not one of \['fp32', 'bf16'\]"),
        ({"data.mixture": "interleaved"}, r"unknown mixture 'interleaved'; valid: \['laion_only'"),
        ({"data.mixture.mmc4_probability": 0.3}, "unknown key 'data.mixture.mmc4_probability'"),
        ({"model.special_embeddings": "learned"}, r"valid: \['frozen', 'trainable'\]"),
        ({"train.steps": "many"}, "expected int"),
        ({"nothing": 1}, "Valid keys here: data.laion"),
        ({"seed": 1}, r"unknown key 'seed'. Did you mean train.seed\?"),  # the whole key
    ],
)
def test_bad_overrides_name_what_is_valid(changes, message):
    with pytest.raises(SpecError, match=message):
        RunSpec().override(changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train.lr": "nan"}, "train.lr: must be a finite number, got 'nan'"),
        ({"train.lr": "inf"}, "train.lr: must be a finite number"),
        ({"train.lr": "-1"}, r"train.lr: must be > 0, got -1.0"),
        ({"train.lr": 0}, r"train.lr: must be > 0"),
        ({"train.clip_norm": "nan"}, "train.clip_norm: must be a finite number"),
        ({"train.clip_norm": -1.0}, r"train.clip_norm: must be >= 0 \(0: no clipping\)"),
        ({"train.steps": 0}, "train.steps: must be >= 1, got 0"),
        ({"train.log_every": 0}, "train.log_every: must be >= 1"),
        ({"train.checkpoint_every": -5}, r"train.checkpoint_every: must be >= 0 \(0: never\)"),
        ({"data.workers": -1}, "data.workers: must be >= 0, got -1"),
        ({"data.laion.hflip_prob": 1.5}, r"data.laion.hflip_prob: a probability must be in \["),
        ({"data.mmc4.min_images": 7}, r"data.mmc4.min_images \(7\) exceeds data.mmc4.max_images"),
        ({"eval.shots": "0,-4"}, "eval.shots: shot counts must be >= 0"),
        ({"data.mixture.laion_batch_size": -2}, "data.mixture.laion_batch_size: must be >= 0"),
        ({"train.schedule.warmup_steps": -1}, "train.schedule.warmup_steps: must be >= 0"),
        ({"data.mmc4_filter.threshold": "nan"}, "data.mmc4_filter.threshold: must be a finite"),
        ({"model.xattn_every": 0}, "xattn_every must be a positive integer, got 0"),
    ],
)
def test_values_out_of_range_are_rejected_at_override_time(changes, message):
    with pytest.raises(SpecError, match=message):
        RunSpec().override(changes)
    assert RunSpec().override({"train.clip_norm": 0}).train.clip_norm == 0.0  # off is allowed


def test_clip_norm_zero_leaves_gradients_as_they_are():
    import torch

    from workbench.train.dist import clip_grad_norm

    grad = torch.tensor([3.0, 4.0])
    param = torch.nn.Parameter(torch.zeros(2))
    param.grad = grad.clone()
    assert clip_grad_norm([param], 0.0) == pytest.approx(5.0)
    assert torch.equal(param.grad, grad)  # not scaled
    assert clip_grad_norm([param], 1.0) == pytest.approx(5.0)
    assert param.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_canonical_json_round_trips_and_config_id_ignores_the_seed():
    spec = RunSpec(name="demo").override(
        {"data.mixture": "sampled", "data.mixture.mmc4_probability": 0.25, "eval.shots": (0, 8)}
    )
    assert RunSpec.from_json(spec.to_json()) == spec
    assert spec.to_json() == RunSpec.from_json(spec.to_json()).to_json()
    assert len(spec.config_id) == 10
    assert spec.override({"train.seed": 3}).config_id == spec.config_id
    assert spec.override({"model.xattn_every": 2}).config_id != spec.config_id
    how = {"train.strategy": "fsdp", "train.log_every": 1, "train.activation_checkpointing": True}
    assert spec.override(how).config_id == spec.config_id  # how it runs, not what it computes
    assert spec.override({"train.precision": "bf16"}).config_id != spec.config_id
    assert set(RunSpec().flatten()) <= set(spec.flatten()) | {"data.mixture.laion_batch_size",
        "data.mixture.mmc4_batch_size", "data.mixture.laion_loss_multiplier",
        "data.mixture.mmc4_loss_multiplier"}  # fmt: skip


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedules_warm_up_then_follow_their_shape(name):
    schedule = SCHEDULES.get(name)(warmup_steps=10)
    factors = [schedule(step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(0.0 <= f <= 1.0 for f in factors)
    if isinstance(schedule, Constant):
        assert factors[10:] == [1.0] * 90
    if isinstance(schedule, Linear | Cosine):
        assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.05
        assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_weight_decay_applies_to_cross_attention_only(tiny_lm_dirs):
    from helpers import build

    from workbench.train.optim import build_optimizer

    model, _ = build(tiny_lm_dirs["llama"], xattn_every=2)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.1)
    decay, no_decay, special = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert special["weight_decay"] == 0.0 and special["lr_scale"] == 1.0  # their own group
    assert {names[id(p)] for p in special["params"]} == {
        "lang_model.model.embed_tokens.special",
        "lang_model.lm_head.special",
    }
    assert all(".xattn." in names[id(p)] for p in decay["params"])
    assert any(names[id(p)].endswith("attn_gate") for p in decay["params"])  # gates decay too
    assert {names[id(p)].split(".")[0] for p in no_decay["params"]} == {"resampler"}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable


def test_xattn_every_has_one_rule_for_set_ablate_and_the_model(tiny_lm_dirs):
    from workbench.axes import load_ablations
    from workbench.model import create_model_and_transforms

    lm = str(tiny_lm_dirs["llama"])  # 4 decoder layers
    spec = RunSpec().override({"model.lm": lm})
    assert spec.override({"model.xattn_every": 2}).model.xattn_every == 2
    divide = r"does not divide the LM's 4 decoder layers; valid: \[1, 2, 4\]"
    with pytest.raises(SpecError, match=divide):  # --set
        spec.override({"model.xattn_every": 3})
    with pytest.raises(SpecError, match=divide):  # --ablate
        load_ablations().get("xattn_every").apply(spec, "3")
    with pytest.raises(ValueError, match=divide):  # the model factory
        create_model_and_transforms("wb-tiny-vit", lm, xattn_every=3)
    with pytest.raises(SpecError, match="exceeds the LM's 4 decoder layers"):
        spec.override({"model.xattn_every": 8})
    with pytest.raises(SpecError, match="positive integer"):
        spec.override({"model.xattn_every": 0})
    # a later change of the LM is checked against the value already set
    with pytest.raises(SpecError, match=divide):
        RunSpec().override({"model.xattn_every": 3}).override({"model.lm": lm})


def test_component_choices_have_one_form():
    spec = RunSpec()
    flat = spec.flatten()
    kinds = {"model.special_embeddings": "special_embeddings", "model.resampler": "resampler",
             "data.mixture": "mixture", "data.mmc4_filter": "mmc4_filter",
             "train.schedule": "schedule"}  # fmt: skip
    for key, expected in kinds.items():
        kind, name = spec_choice(spec, key)
        assert kind == expected and flat[key] == name and isinstance(name, str), key
    assert flat["model.resampler.depth"] == 6
    frozen = spec.override({"model.special_embeddings": "frozen"})
    assert type(frozen.model.special_embeddings.options).__name__ == "Frozen"


def spec_choice(spec: RunSpec, key: str) -> tuple[str, str]:
    node = spec
    for part in key.split("."):
        node = getattr(node, part)
    assert isinstance(node, Choice), key
    return node.kind, node.name
