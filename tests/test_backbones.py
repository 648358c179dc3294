"""Pretrained shapes backbones (built once per session), real backbones by name, presets."""

from __future__ import annotations

import json
import time

import numpy as np
import open_clip
import pytest
import torch
from huggingface_hub import constants
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.backbones.shapes import build_shapes_backbones
from workbench.backbones.shapes_clip import clip_similarity
from workbench.data.shapes import document
from workbench.model import create_model_and_transforms
from workbench.model.factory import load_lm, load_tokenizer
from workbench.model.presets import PRESETS, build_preset, count_parameters
from workbench.model.vision import load_vision


@pytest.mark.slow
def test_tiny_backbones_are_pretrained_cached_and_recorded(shapes_backbones, tmp_path):
    quality = shapes_backbones.quality
    assert quality["clip"]["zero_shot_colour_accuracy"] >= 0.95
    assert quality["clip"]["zero_shot_shape_accuracy"] >= 0.95
    assert quality["clip"]["retrieval_image_to_caption_top1"] >= 0.7
    assert quality["lm"]["heldout_perplexity"] < 4.0
    recipe = json.loads((shapes_backbones.root / "recipe.json").read_text())
    assert recipe["size"] == "tiny" and recipe["seed"] == 0
    assert json.loads((shapes_backbones.root / "quality.json").read_text()) == quality

    start = time.perf_counter()
    again = build_shapes_backbones(
        shapes_backbones.root.parent, "tiny", seed=0, show_progress=False
    )
    assert time.perf_counter() - start < 1.0 and again == shapes_backbones  # a cache hit


@pytest.mark.slow
def test_backbones_load_through_the_standard_loaders(shapes_backbones):
    open_clip.add_model_config(shapes_backbones.vision_config)
    clip, _, _preprocess = open_clip.create_model_and_transforms(
        shapes_backbones.vision, pretrained=str(shapes_backbones.vision_checkpoint)
    )
    lm = AutoModelForCausalLM.from_pretrained(shapes_backbones.lm)
    tokenizer = AutoTokenizer.from_pretrained(shapes_backbones.lm)
    assert lm.config.model_type == "llama" and len(tokenizer) == lm.config.vocab_size

    model, processor, flamingo_tokenizer = create_model_and_transforms(
        **shapes_backbones.model_kwargs()
    )
    for name, value in clip.visual.state_dict().items():  # the trained weights, not random ones
        torch.testing.assert_close(model.vision.visual.state_dict()[name], value, rtol=0, atol=0)
    ids = flamingo_tokenizer("<image>Output: a red circle.", return_tensors="pt").input_ids
    images = torch.randn(1, 1, 3, 48, 48)
    assert model(images, None, ids, labels=ids).loss.isfinite()
    assert processor.transforms[0].size == 48


@pytest.mark.slow
def test_the_clip_scores_documents_for_the_mmc4_filter(shapes_backbones):
    similarity = clip_similarity(shapes_backbones.root / "clip")
    rng = np.random.default_rng(0)
    matched, other = [], []
    for _ in range(20):
        doc = document(rng, 64, similarity_fn=similarity)
        sim = np.asarray(doc["similarity_matrix"])
        best = sim.argmax(axis=1)
        matched += [sim[i, j] for i, j in enumerate(best)]
        other += [v for i, j in enumerate(best) for k, v in enumerate(sim[i]) if k != j]
    assert np.mean(matched) > np.mean(other) + 0.1


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_shapes_match_the_published_counts(name):
    model = build_preset(name, weights="random", device="meta")
    counts = count_parameters(model)
    published = PRESETS.get(name).xattn_params
    assert abs(counts["xattn"] - published) / published < 0.01
    assert abs(counts["resampler"] - 63e6) / 63e6 < 0.02  # ~63M at vision width 1024
    config = model.lang_model.config
    special_tables = 1 if config.tie_word_embeddings else 2  # input (and untied output) rows
    special = special_tables * 2 * config.hidden_size
    assert counts["trainable"] == counts["resampler"] + counts["xattn"] + special


def test_missing_downloads_fail_fast_with_what_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="huggingface-cli download timm/"):
        load_vision("ViT-B-32", "openai")
    with pytest.raises(OSError, match="huggingface-cli download EleutherAI/pythia-70m"):
        load_lm("EleutherAI/pythia-70m")
    with pytest.raises(OSError, match="huggingface-cli download EleutherAI/pythia-70m"):
        load_tokenizer("EleutherAI/pythia-70m")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lm("./no/such/dir")
    with pytest.raises(ValueError, match="no pretrained tag 'imagenet'"):
        load_vision("ViT-B-32", "imagenet")
    assert time.perf_counter() - start < 10  # no network wait
