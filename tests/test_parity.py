"""Parity with the reference implementation, open-flamingo 2.0.1 (run by ``nox -s parity``).

The reference model is built at a tiny shape with random (non-zero-gate) weights; its
``state_dict()`` is converted into the workbench model, and both must give the same logits and
the same generated tokens.
"""

from __future__ import annotations

import os

import pytest
import torch

from workbench.model import create_model_and_transforms
from workbench.model.convert import export_reference_state_dict, load_reference_state_dict
from workbench.model.factory import load_tokenizer

pytestmark = pytest.mark.parity

if os.environ.get("WB_REQUIRE_PARITY"):  # in the parity session a missing reference is a failure
    import open_flamingo  # noqa: F401
else:
    pytest.importorskip("open_flamingo")

import open_clip  # noqa: E402
from open_flamingo.src.flamingo import Flamingo as ReferenceFlamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

LAYERS_PATH = {
    "llama": "model.layers",
    "opt": "model.decoder.layers",
    "gpt_neox": "gpt_neox.layers",
}


def build_reference(lm_dir, xattn_every: int, seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(str(lm_dir))
    clip, _, _ = open_clip.create_model_and_transforms("wb-tiny-vit", pretrained=None)
    clip.visual.output_tokens = True
    lm = AutoModelForCausalLM.from_pretrained(str(lm_dir), dtype=torch.float32)
    lm.resize_token_embeddings(len(tokenizer))
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name(LAYERS_PATH[lm.config.model_type])
    model = ReferenceFlamingo(
        clip,
        lm,
        tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
        tokenizer.convert_tokens_to_ids("<image>"),
        vis_dim=64,
        cross_attn_every_n_layers=xattn_every,
    )
    # what the reference's factory trains: resampler, cross-attention, the input embeddings
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    model.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    model.lang_encoder.get_input_embeddings().requires_grad_(True)
    with torch.no_grad():  # open the gates, so that the images matter
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.uniform_(0.5, 1.0)
                layer.ff_gate.uniform_(0.5, 1.0)
    return model.eval(), tokenizer


def interleaved_batch(tokenizer, image_size: int = 32):
    texts = [
        "<image>a red circle.<|endofchunk|><image>two blue squares<|endofchunk|><image>a star",
        "<image>Output: a<|endofchunk|><image>Output: one cyan star<|endofchunk|><image>Output:",
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 3, image_size, image_size, generator=generator)
    return images, enc.input_ids, enc.attention_mask


@pytest.mark.parametrize("family", ["llama", "opt", "gpt_neox"])
@pytest.mark.parametrize("xattn_every", [1, 2, 4])
def test_logits_match_reference(tiny_lm_dirs, family, xattn_every):
    reference, tokenizer = build_reference(tiny_lm_dirs[family], xattn_every)
    model, _, _ = create_model_and_transforms(
        "wb-tiny-vit", str(tiny_lm_dirs[family]), xattn_every=xattn_every
    )
    report = load_reference_state_dict(model.eval(), reference.state_dict(), strict=True)
    assert not report.missing

    images, input_ids, attention_mask = interleaved_batch(tokenizer)
    with torch.no_grad():
        expected = reference(images[:, :, None], input_ids, attention_mask=attention_mask).logits
        got = model(images, None, input_ids, attention_mask).logits
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # and the images do matter at these weights
    with torch.no_grad():
        blind = model(torch.zeros_like(images), None, input_ids, attention_mask).logits
    assert (blind - got).abs().max() > 1e-3


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_matches_reference(tiny_lm_dirs, num_beams):
    reference, tokenizer = build_reference(tiny_lm_dirs["llama"], xattn_every=2)
    model, _, _ = create_model_and_transforms(
        "wb-tiny-vit", str(tiny_lm_dirs["llama"]), xattn_every=2
    )
    load_reference_state_dict(model.eval(), reference.state_dict(), strict=True)
    images, input_ids, attention_mask = interleaved_batch(tokenizer)
    for row in range(2):  # batch 1: the reference's generate has no left-padding support
        ids = input_ids[row : row + 1, : int(attention_mask[row].sum())]
        prompt = images[row : row + 1]
        expected = reference.generate(
            prompt[:, :, None], ids, max_new_tokens=12, num_beams=num_beams
        )
        got = model.generate(prompt, None, ids, max_new_tokens=12, num_beams=num_beams)
        new = expected[0, ids.shape[1] :]
        # the reference would attend to image 1 after a generated <image>; ours never emits one
        assert model.config.media_token_id not in new.tolist()
        assert got.tolist() == expected.tolist()


def test_export_round_trips_into_the_reference(tiny_lm_dirs):
    reference, _ = build_reference(tiny_lm_dirs["llama"], xattn_every=1)
    model, _, _ = create_model_and_transforms("wb-tiny-vit", str(tiny_lm_dirs["llama"]))
    load_reference_state_dict(model, reference.state_dict(), strict=True)
    exported = export_reference_state_dict(model)
    assert set(exported) == set(reference.state_dict())
    fresh, _ = build_reference(tiny_lm_dirs["llama"], xattn_every=1, seed=5)
    fresh.load_state_dict(exported, strict=True)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0, msg=key)
