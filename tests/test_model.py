"""Invariants of the Flamingo model on tiny random backbones (CPU)."""

from __future__ import annotations

import pytest
import torch
from helpers import build, encode, images
from transformers import AutoModelForCausalLM

from workbench.model.embeddings import SPECIAL_EMBEDDINGS
from workbench.model.lm import LM_ADAPTERS
from workbench.model.xattn import text_time

TEXT = "<image>a red circle.<|endofchunk|><image>two blue squares<|endofchunk|><image>a star"


@pytest.mark.parametrize("family", LM_ADAPTERS.names())
@pytest.mark.parametrize("special_embeddings", SPECIAL_EMBEDDINGS.names())
def test_zero_gates_reproduce_the_language_model(tiny_lm_dirs, family, special_embeddings):
    model, tokenizer = build(tiny_lm_dirs[family], special_embeddings=special_embeddings)
    bare = AutoModelForCausalLM.from_pretrained(tiny_lm_dirs[family], dtype=torch.float32).eval()
    bare.resize_token_embeddings(model.lang_model.get_input_embeddings().weight.shape[0])
    with torch.no_grad():  # the rows added for the special tokens, as the Flamingo LM has them
        bare.get_input_embeddings().weight.copy_(model.lang_model.get_input_embeddings().weight)
        bare.get_output_embeddings().weight.copy_(model.lang_model.get_output_embeddings().weight)
    input_ids, attention_mask = encode(tokenizer, [TEXT, "<image>Output: a small star"])
    with torch.no_grad():
        got = model(images(2, 3), None, input_ids, attention_mask).logits
        expected = bare(input_ids=input_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", ["llama", "opt"])  # untied and tied
def test_exactly_the_intended_parameters_train(tiny_lm_dirs, family):
    model, _ = build(tiny_lm_dirs[family], xattn_every=2)
    names = trainable_names(model)
    resampler = {n for n, _ in model.resampler.named_parameters(prefix="resampler")}
    xattn = {n for n in names if ".xattn." in n}
    special = names - resampler - xattn
    assert resampler <= names
    assert len({n.split(".xattn.")[0] for n in xattn}) == 2  # layers 1 and 3 of 4
    embed = (
        "lang_model.model.embed_tokens"
        if family == "llama"
        else "lang_model.model.decoder.embed_tokens"
    )
    expected_special = {f"{embed}.special"} | (
        {"lang_model.lm_head.special"} if family == "llama" else set()
    )
    assert special == expected_special  # a tied LM shares one table between input and output
    for name in special:
        assert model.get_parameter(name).shape[0] == 2

    frozen, _ = build(tiny_lm_dirs[family], special_embeddings="frozen")
    assert not any(".special" in n for n in trainable_names(frozen))
    assert not any(
        n.startswith(("vision.", "lang_model.")) and ".xattn." not in n
        for n in trainable_names(frozen)
    )


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_a_training_step_changes_only_the_special_rows(tiny_lm_dirs, family):
    model, tokenizer = build(tiny_lm_dirs[family], open_gates=True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    input_ids, attention_mask = encode(tokenizer, [TEXT, "<image>Output: a<|endofchunk|>"])
    loss = model(images(2, 3), None, input_ids, attention_mask, labels=input_ids).loss
    loss.backward()
    optimizer.step()

    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    frozen_changed = {
        k for k in changed if k.startswith(("vision.", "lang_model.")) and ".xattn." not in k
    }
    assert frozen_changed == {k for k in after if k.endswith(".special")}
    assert any(k.startswith("resampler.") for k in changed)
    embed = model.lang_model.get_input_embeddings()
    assert torch.equal(
        embed.base.weight, before[next(k for k in before if k.endswith("embed_tokens.base.weight"))]
    )


def test_text_time_counts_images_at_or_before_each_token():
    locations = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert text_time(locations).tolist() == [[0, 1, 1, 1, 2, 2], [1, 1, 1, 1, 1, 1]]
    assert text_time(locations, torch.tensor([2, 0]))[0].tolist() == [2, 3, 3, 3, 4, 4]


def perturb_image(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (1, 3)-image batches that differ in image k only."""
    base, perturbed = images(1, 3), images(1, 3, seed=1)
    perturbed[:, :k] = base[:, :k]
    perturbed[:, k + 1 :] = base[:, k + 1 :]
    return base, perturbed


def xattn_outputs(model, input_ids, batches) -> tuple[torch.Tensor, list[int]]:
    """Attention-branch outputs of the first cross-attention block, and the <image> positions."""
    media_locations = input_ids == model.config.media_token_id
    hidden = torch.randn(1, input_ids.shape[1], model.lang_model.config.hidden_size)
    attn = model.xattn_blocks()[0].attn
    with torch.no_grad():
        outs = [
            attn(hidden, model.encode_images(x, None, input_ids), text_time(media_locations))
            for x in batches
        ]
    return torch.stack(outs), media_locations[0].nonzero()[:, 0].tolist()


@pytest.mark.parametrize("k", [0, 1, 2])
def test_an_image_reaches_only_the_text_up_to_the_next_image(tiny_lm_dirs, k):
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True)
    input_ids, _ = encode(tokenizer, [TEXT])
    base, perturbed = perturb_image(k)

    # the cross-attention output itself: exactly the tokens from the k-th <image> to the next
    outs, starts = xattn_outputs(model, input_ids, (base, perturbed))
    starts.append(input_ids.shape[1])
    moved = (outs[0] - outs[1]).abs().amax(dim=-1)[0] > 0
    expected = torch.zeros_like(moved)
    expected[starts[k] : starts[k + 1]] = True
    assert moved.tolist() == expected.tolist()

    # the whole model: nothing before the k-th <image> moves (causality), its span does
    with torch.no_grad():
        logits = [model(x, None, input_ids).logits for x in (base, perturbed)]
    moved = (logits[0] - logits[1]).abs().amax(dim=-1)[0] > 1e-6
    assert not moved[: starts[k]].any()
    assert moved[starts[k] : starts[k + 1]].all()


def test_attending_to_all_previous_images(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True, only_attend_immediate=False)
    input_ids, _ = encode(tokenizer, ["a plain start " + TEXT])
    outs, starts = xattn_outputs(model, input_ids, perturb_image(0))
    moved = (outs[0] - outs[1]).abs().amax(dim=-1)[0] > 0
    assert not moved[: starts[0]].any()  # no image yet: exactly zero, never a peek at the future
    assert moved[starts[0] :].all()  # every later token still sees image 0
    assert torch.equal(outs[0][0, : starts[0]], torch.zeros_like(outs[0][0, : starts[0]]))


def test_zero_images_mixed_counts_and_padded_slots(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True)
    six = "".join(f"<image>shape {i}.<|endofchunk|>" for i in range(6))
    input_ids, attention_mask = encode(tokenizer, ["no image here at all", "<image>one", six])
    mask = torch.tensor([[False] * 6, [True] + [False] * 5, [True] * 6])
    x = images(3, 6)
    garbage = x.clone()
    garbage[~mask] = float("nan")  # padded slots are never encoded: NaN there changes nothing
    out = model(x, mask, input_ids, attention_mask, labels=input_ids)
    out_garbage = model(garbage, mask, input_ids, attention_mask, labels=input_ids)
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.logits, out_garbage.logits, rtol=0, atol=0)

    # a batch with no image at all, and an image tensor with no slots
    text_ids, text_mask = encode(tokenizer, ["no image", "still none"])
    for empty in (images(2, 0), images(2, 2)):
        slots = torch.zeros(2, empty.shape[1], dtype=torch.bool)
        logits = model(empty, slots, text_ids, text_mask).logits
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("four_dims", "images must be"),
        ("frames_dim", "images must be"),
        ("mask_shape", "image_mask must be"),
        ("mask_not_prefix", "prefix"),
        ("too_many_tokens", "<image> tokens but"),
        ("batch_mismatch", "input_ids must be"),
        ("labels_shape", "labels must be"),
    ],
)
def test_wrong_inputs_raise_clear_errors(tiny_lm_dirs, case, message):
    model, tokenizer = build(tiny_lm_dirs["llama"])
    input_ids, attention_mask = encode(tokenizer, ["<image>a<image>b", "<image>c"])
    x, mask, labels = images(2, 2), torch.ones(2, 2, dtype=torch.bool), None
    if case == "four_dims":
        x = x[:, 0]
    elif case == "frames_dim":
        x = x[:, :, None]
    elif case == "mask_shape":
        mask = mask[:, :1]
    elif case == "mask_not_prefix":
        mask = torch.tensor([[True, True], [False, True]])
    elif case == "too_many_tokens":
        mask = torch.tensor([[True, False], [True, False]])
    elif case == "batch_mismatch":
        input_ids, attention_mask = input_ids[:1], attention_mask[:1]
    elif case == "labels_shape":
        labels = input_ids[:, :-1]
    with pytest.raises(ValueError, match=message):
        model(x, mask, input_ids, attention_mask, labels=labels)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"xattn_every": 0}, ValueError, "positive integer"),
        ({"xattn_every": 5}, ValueError, "exceeds the LM's 4 decoder layers"),
        ({"special_embeddings": "trainble"}, KeyError, "Did you mean 'trainable'"),
        ({"resampler": "qformer"}, KeyError, "Known: perceiver"),
        ({"xattn_evry": 2}, TypeError, "unknown model option"),
    ],
)
def test_bad_options_raise_clear_errors(tiny_lm_dirs, options, error, message):
    with pytest.raises(error, match=message):
        build(tiny_lm_dirs["llama"], **options)


def test_the_language_model_alone_refuses_to_run_without_images(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["llama"])
    input_ids, _ = encode(tokenizer, ["a red circle"])
    with pytest.raises(RuntimeError, match="outside a media scope"):
        model.lang_model(input_ids=input_ids)
    model(images(1, 1), torch.zeros(1, 1, dtype=torch.bool), input_ids)  # the scope closed cleanly
    assert not model.context.active and model.context.media is None


def test_score_gives_per_token_log_likelihoods(tiny_lm_dirs):
    model, tokenizer = build(tiny_lm_dirs["opt"], open_gates=True)
    input_ids, attention_mask = encode(
        tokenizer, ["<image>Output: a red circle", "<image>Output: a"]
    )
    x = images(2, 1)
    scores = model.score(x, None, input_ids, attention_mask)
    logits = model(x, None, input_ids, attention_mask).logits
    expected = logits[0, :-1].log_softmax(-1)[
        torch.arange(input_ids.shape[1] - 1), input_ids[0, 1:]
    ]
    assert scores.shape == (2, input_ids.shape[1] - 1)
    torch.testing.assert_close(scores[0], expected, rtol=0, atol=1e-5)
    assert (scores[1][attention_mask[1, 1:] == 0] == 0).all()
    assert (scores[0] < 0).all()


@pytest.mark.parametrize("with_images", [True, False])
def test_every_trainable_parameter_gets_a_gradient_under_bf16_autocast(tiny_lm_dirs, with_images):
    # DDP without find_unused_parameters needs a gradient for every trainable parameter, even
    # from a batch without a single image
    model, tokenizer = build(tiny_lm_dirs["llama"], open_gates=True)
    model.train()
    texts = ["<image>a red<|endofchunk|><image>b", "<image>c"] if with_images else ["a", "b c"]
    input_ids, attention_mask = encode(tokenizer, texts)
    mask = torch.tensor([[True, True], [True, False]]) & with_images
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(2, 2), mask, input_ids, attention_mask, labels=input_ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
