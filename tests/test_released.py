"""Released OpenFlamingo checkpoints load into the workbench (run by ``nox -s parity``).

For each released family (:data:`released_reference.FAMILIES`: MPT-1B and MPT-7B with padded
vocabularies and ALiBi, RedPajama-INCITE-3B with an untied head, LLaMA-7B untied with GQA, each
at a small shape with its real config keys) the reference builds its model with its own factory
and writes its trimmed ``checkpoint.pt`` and its training checkpoint, under transformers 4.57
(as released) and under this environment's transformers. The workbench loads the same LM and
CLIP files and each checkpoint, and must give the reference's logits (1e-4), loss (1e-5) and
greedy generations; its exports load strictly into the reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from released_reference import FAMILIES, NEW_TOKENS

from workbench.model import create_model_and_transforms
from workbench.model.convert import export_reference_state_dict, load_reference_checkpoint
from workbench.model.lm import adapter_for
from workbench.model.presets import PRESETS, build_preset, count_parameters, describe
from workbench.model.tiny import train_tiny_tokenizer

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
OVERLAY_457 = ROOT / ".nox" / "tf457-overlay"  # transformers 4.57 + open-flamingo (noxfile)
REFERENCE = Path(__file__).with_name("released_reference.py")
CLIP_CONFIGS = ROOT / "workbench" / "model" / "clip_configs"
#: transformers version -> the export naming its reference model uses for a GPT-NeoX head
ENVIRONMENTS = {"4.57": "released", "project": "transformers5"}


def _reference_env(which: str) -> dict[str, str]:
    if which == "project":  # this process's path: the parity overlay's transformers
        return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if not (OVERLAY_457 / "transformers").is_dir():
        message = f"transformers 4.57 overlay missing at {OVERLAY_457} (nox -s parity makes it)"
        if os.environ.get("WB_REQUIRE_PARITY"):
            pytest.fail(message)
        pytest.skip(message)
    return {**os.environ, "PYTHONPATH": str(OVERLAY_457)}


def _run_reference(which: str, out: Path, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REFERENCE), str(out), str(CLIP_CONFIGS), str(out / "tokenizer"),
         *extra],
        env=_reference_env(which), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module", params=list(ENVIRONMENTS))
def released(request, tmp_path_factory) -> tuple[str, Path]:
    """(environment, folder of the reference's files for every family)."""
    out = tmp_path_factory.mktemp(f"released-{request.param}")
    train_tiny_tokenizer().save_pretrained(out / "tokenizer")
    _run_reference(request.param, out)
    version = (out / "transformers.txt").read_text()
    assert version.startswith("4.57") == (request.param == "4.57"), version
    return request.param, out


def _workbench_model(family: str, folder: Path):
    model, _, tokenizer = create_model_and_transforms(
        "wb-tiny-vit", str(folder / "lm"), vision_pretrained=str(folder / "clip.pt"),
        xattn_every=FAMILIES[family]["xattn_every"],
    )  # fmt: skip
    return model.eval(), tokenizer


@pytest.mark.parametrize("layout", ["checkpoint.pt", "train-checkpoint.pt"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_released_checkpoint_computes_what_the_reference_does(released, family, layout):
    which, out = released
    folder = out / family
    expected = torch.load(folder / "expected.pt", weights_only=True)
    model, tokenizer = _workbench_model(family, folder)
    assert len(tokenizer) == expected["vocab"]  # resized to the tokenizer, as the reference
    load_reference_checkpoint(model, folder / layout)
    images, ids, mask = expected["images"], expected["input_ids"], expected["attention_mask"]
    with torch.no_grad():
        got = model(images, None, ids, mask, labels=expected["labels"])
    assert got.logits.shape == expected["logits"].shape
    logit_diff = (got.logits - expected["logits"]).abs().max().item()
    assert logit_diff <= 1e-4, (family, logit_diff)
    assert abs(got.loss.item() - expected["loss"].item()) <= 1e-5
    same = True
    for row in range(2):
        prompt = ids[row : row + 1, : int(mask[row].sum())]
        generated = model.generate(images[row : row + 1], None, prompt, max_new_tokens=NEW_TOKENS,
                                   num_beams=1)  # fmt: skip
        same &= generated[0].tolist() == expected["generations"][row]
    print(f"transformers {which} {family} {layout}: max |logit diff| {logit_diff:.2e}, "
          f"greedy generations equal: {same}")  # fmt: skip
    assert same, family


def test_exports_load_strictly_into_the_reference(released):
    which, out = released
    naming = ENVIRONMENTS[which]
    for family in FAMILIES:
        folder = out / family
        model, _ = _workbench_model(family, folder)
        load_reference_checkpoint(model, folder / "checkpoint.pt")
        torch.save(export_reference_state_dict(model, naming=naming), folder / "export-full.pt")
        trimmed = export_reference_state_dict(model, trainable_only=True, naming=naming)
        torch.save(trimmed, folder / "export-trimmed.pt")
        released_keys = set(torch.load(folder / "expected.pt", weights_only=True)["trimmed_keys"])
        # the released key set, and an untied head whose special rows the workbench trains
        extra = set(trimmed) - released_keys
        assert released_keys <= set(trimmed) and extra <= {"lang_encoder.lm_head.weight"}, family
        head_unreleased = family == "openflamingo-9b-llama" or (
            family == "openflamingo-4b" and naming == "transformers5"  # lm_head: no "embed"
        )
        assert bool(extra) == head_unreleased, (family, extra)
    _run_reference(which, out, "--check-export")
    for family in FAMILIES:
        check = json.loads((out / family / "export-check.json").read_text())
        assert check == {
            "strict_full_load": True, "values_equal": True,
            "trimmed_unexpected": [], "trimmed_values_equal": True,
        }, (family, check)  # fmt: skip


@pytest.mark.parametrize("name", PRESETS.names())
def test_a_preset_has_the_reference_models_shapes_and_count(name):
    from open_flamingo.src.flamingo import Flamingo as ReferenceFlamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance
    from transformers import AutoModelForCausalLM

    preset = PRESETS.get(name)
    ours = build_preset(name)  # on the meta device: shapes only
    config = preset.lm_config()
    with torch.device("meta"):
        clip = open_clip.create_model(preset.vision, pretrained=None, device="meta")
        lm = AutoModelForCausalLM.from_config(config)
        lm.resize_token_embeddings(preset.tokenizer_size + 3, mean_resizing=False)
        extend_instance(lm, FlamingoLMMixin)
        lm.set_decoder_layers_attr_name(adapter_for(lm).layers_path)
        vocab = preset.tokenizer_size
        width = open_clip.get_model_config(preset.vision)["vision_cfg"]["width"]
        reference = ReferenceFlamingo(clip, lm, vocab, vocab + 1, vis_dim=width,
                                      cross_attn_every_n_layers=preset.xattn_every)  # fmt: skip
    exported = export_reference_state_dict(ours, naming="transformers5")  # this transformers
    shapes = {k: tuple(v.shape) for k, v in exported.items()}
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert shapes == expected  # every weight, the resized vocabulary (e.g. 50280 rows) included
    counts = count_parameters(ours)
    assert counts["reference"] == sum(p.numel() for p in reference.parameters())
    assert f"{counts['reference']:>15,}" in describe(name)
