"""Generation (KV cache, images encoded once, stop at <|endofchunk|>) and weight conversion."""

from __future__ import annotations

import pytest
import torch
from helpers import build, encode, images

from workbench.model.convert import (
    export_reference_state_dict,
    load_reference_checkpoint,
    load_reference_state_dict,
)
from workbench.registry import Registry, RegistryError

PROMPT = "<image>Output: a red circle.<|endofchunk|><image>Output:"


def test_generation_uses_the_kv_cache_and_encodes_images_once(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True)
    input_ids, _ = encode(tokenizer, [PROMPT])
    x = images(1, 2)
    calls = []
    model.vision.register_forward_hook(lambda *_: calls.append(1))
    lm_inputs: list[int] = []
    model.lang_model.register_forward_pre_hook(
        lambda _m, _a, kw: lm_inputs.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    cached = model.generate(x, None, input_ids, max_new_tokens=8, min_new_tokens=8)
    assert calls == [1]
    assert lm_inputs[0] == input_ids.shape[1] and set(lm_inputs[1:]) == {1}  # one token a step
    uncached = model.generate(
        x, None, input_ids, max_new_tokens=8, min_new_tokens=8, use_cache=False
    )
    assert cached.tolist() == uncached.tolist()
    assert cached.shape[1] == input_ids.shape[1] + 8
    assert not model.context.active
    static = model.generate(  # transformers' preallocated cache (a benchmarks/cpu_step.py lever)
        x, None, input_ids, max_new_tokens=8, min_new_tokens=8, cache_implementation="static"
    )
    assert static.tolist() == cached.tolist()
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(ValueError, match="autocast"):
        model.generate(x, None, input_ids, max_new_tokens=2, cache_implementation="static")


def test_generation_stops_at_end_of_chunk(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True)
    eoc = model.config.eoc_token_id
    with torch.no_grad():  # make <|endofchunk|> the LM's favourite token
        model.lang_model.get_output_embeddings().special[1].mul_(0).add_(1e3)
        hidden = model.lang_model.config.hidden_size
        model.lang_model.get_output_embeddings().special[1].copy_(torch.ones(hidden) * 50)
    input_ids, _ = encode(tokenizer, [PROMPT])
    out = model.generate(images(1, 2), None, input_ids, max_new_tokens=10)
    new = out[0, input_ids.shape[1] :].tolist()
    assert new[-1] == eoc and len(new) < 10


def test_beam_search_and_batched_generation(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["gpt_neox"], open_gates=True)
    tokenizer.padding_side = "left"
    input_ids, attention_mask = encode(tokenizer, [PROMPT, "<image>Output:"])
    x = images(2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    beams = model.generate(x, mask, input_ids, attention_mask, max_new_tokens=6, num_beams=3)
    greedy = model.generate(x, mask, input_ids, attention_mask, max_new_tokens=6)
    assert beams.shape[0] == greedy.shape[0] == 2
    # the batched, left-padded row equals generating it alone
    alone_ids, _ = encode(tokenizer, ["<image>Output:"])
    alone = model.generate(x[1:, :1], None, alone_ids, max_new_tokens=6)
    assert greedy[1, input_ids.shape[1] :].tolist()[: alone.shape[1] - alone_ids.shape[1]] == (
        alone[0, alone_ids.shape[1] :].tolist()
    )


@pytest.mark.parametrize("family", ["llama", "opt", "mpt"])
def test_reference_layout_round_trip(tiny_lm_dirs, family, tmp_path):
    trained, tokenizer = build(tiny_lm_dirs[family], seed=1, open_gates=True, xattn_every=2)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if name.endswith(".special"):
                p.add_(1.0)  # trained special rows must survive the trip
    full = export_reference_state_dict(trained)
    assert any(k.startswith("lang_encoder.old_decoder_blocks.") for k in full)
    assert any(k.startswith("lang_encoder.gated_cross_attn_layers.") for k in full)
    assert all(v.shape == (1,) for k, v in full.items() if k.endswith("_gate"))

    released = export_reference_state_dict(trained, trainable_only=True)
    assert not any(k.startswith("vision_encoder.") for k in released)
    torch.save(released, tmp_path / "checkpoint.pt")

    fresh, _ = build(tiny_lm_dirs[family], seed=2, xattn_every=2)
    fresh.vision.load_state_dict(trained.vision.state_dict())  # the same pretrained CLIP
    report = load_reference_checkpoint(fresh, tmp_path / "checkpoint.pt")
    assert report.missing_trainable == [] and report.missing  # backbones come from elsewhere
    input_ids, attention_mask = encode(tokenizer, [PROMPT])
    x = images(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh(x, None, input_ids, attention_mask).logits,
            trained(x, None, input_ids, attention_mask).logits,
            rtol=0,
            atol=0,
        )


def test_conversion_rejects_foreign_and_incomplete_checkpoints(tiny_lm_dirs):
    model, _ = build(tiny_lm_dirs["llama"])
    released = export_reference_state_dict(model, trainable_only=True)
    with pytest.raises(KeyError, match="match nothing"):
        load_reference_state_dict(model, {**released, "text_projection.weight": torch.zeros(1)})
    incomplete = {k: v for k, v in released.items() if not k.startswith("perceiver.")}
    with pytest.raises(KeyError, match="lacks"):
        load_reference_state_dict(model, incomplete)
    wrong_shape = dict(released)
    key = next(k for k in released if k.startswith("perceiver.layers.0.0.to_q"))
    wrong_shape[key] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=rf"{key}: checkpoint \(3, 3\), model \("):
        load_reference_state_dict(model, wrong_shape)


def test_registry_rejects_duplicates_and_lists_names_on_a_miss():
    registry: Registry[int] = Registry("test_numbers")
    registry.add("one", 1)
    registry.register("two")(2)
    with pytest.raises(RegistryError, match="already registered"):
        registry.add("one", 11)
    with pytest.raises(RegistryError, match=r"unknown test_numbers 'tree'. Known: one, two"):
        registry.get("tree")
    assert registry.names() == ["one", "two"] and "two" in registry and len(registry) == 2
    with pytest.raises(RegistryError, match="already exists"):
        Registry("test_numbers")
