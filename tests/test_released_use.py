"""Using a released model without the reference installed: the checkpoint layouts and head
names it comes in, its untied head's missing special rows, shape checks that name what does not
fit, padded vocabularies, ``model.init_from``, ``wb eval --from-checkpoint --preset`` and the
offline failure that names every download."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from helpers import base_spec, build, encode, images
from transformers import PretrainedConfig
from typer.testing import CliRunner

from workbench.cli import app
from workbench.model.convert import (
    export_reference_state_dict,
    load_reference_state_dict,
)
from workbench.model.factory import create_model
from workbench.model.presets import PRESETS, Preset, load_released, missing_downloads
from workbench.model.tiny import save_tiny_lm
from workbench.spec import SpecError
from workbench.train.build import check_spec

PROMPT = "<image>Output: a red circle.<|endofchunk|><image>Output:"


def trained(lm_dir: Path, **options):
    model, tokenizer = build(lm_dir, seed=1, open_gates=True, **options)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".special"):
                p.add_(0.5)  # trained special rows
    return model, tokenizer


def logits(model, tokenizer) -> torch.Tensor:
    input_ids, attention_mask = encode(tokenizer, [PROMPT])
    with torch.no_grad():
        return model(images(1, 2), None, input_ids, attention_mask).logits


def test_a_training_checkpoint_with_ddp_prefixes_loads(tiny_lm_dirs):
    source, tokenizer = trained(tiny_lm_dirs["llama"])
    state = export_reference_state_dict(source, trainable_only=True)
    wrapped = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in state.items()},
               "optimizer_state_dict": {"state": {}, "param_groups": []}}  # fmt: skip
    fresh, _ = build(tiny_lm_dirs["llama"], seed=2)
    fresh.vision.load_state_dict(source.vision.state_dict())
    load_reference_state_dict(fresh, wrapped)
    torch.testing.assert_close(logits(fresh, tokenizer), logits(source, tokenizer), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not an OpenFlamingo checkpoint"):
        load_reference_state_dict(fresh, {"epoch": 3, "optimizer_state_dict": {}})


def test_an_untied_heads_missing_special_rows_start_from_its_own_rows(tiny_lm_dirs):
    model, _ = build(tiny_lm_dirs["llama"], seed=3)  # LLaMA: untied head
    state = export_reference_state_dict(trained(tiny_lm_dirs["llama"])[0], trainable_only=True)
    released = {k: v for k, v in state.items() if "lm_head" not in k}  # as the reference saves
    head = model.lang_model.get_output_embeddings()
    rows = head.base.weight[head.special_ids].clone()
    load_reference_state_dict(model, released)  # no KeyError on lm_head.special
    torch.testing.assert_close(head.special.detach(), rows, rtol=0, atol=0)
    embed = model.lang_model.get_input_embeddings()  # the input rows come from the checkpoint
    matrix = released["lang_encoder.model.embed_tokens.weight"]
    torch.testing.assert_close(embed.special.detach(), matrix[embed.special_ids], rtol=0, atol=0)


def test_gpt_neox_heads_load_under_both_names_and_export_the_released_one(tiny_lm_dirs):
    source, tokenizer = trained(tiny_lm_dirs["gpt_neox"])
    released = export_reference_state_dict(source, trainable_only=True)
    assert "lang_encoder.embed_out.weight" in released  # as every released 4B checkpoint
    assert not any("lm_head" in k for k in released)
    full5 = export_reference_state_dict(source, naming="transformers5")
    assert "lang_encoder.lm_head.weight" in full5 and "lang_encoder.embed_out.weight" not in full5
    for state in (released, {k.replace("embed_out", "lm_head"): v for k, v in released.items()}):
        fresh, _ = build(tiny_lm_dirs["gpt_neox"], seed=4)
        fresh.vision.load_state_dict(source.vision.state_dict())
        load_reference_state_dict(fresh, state)
        torch.testing.assert_close(logits(fresh, tokenizer), logits(source, tokenizer))


def test_weights_that_do_not_fit_are_all_named(tiny_lm_dirs):
    model, _ = build(tiny_lm_dirs["llama"])
    state = export_reference_state_dict(model, trainable_only=True)
    embed = "lang_encoder.model.embed_tokens.weight"
    rows, width = state[embed].shape
    state[embed] = state[embed][: rows - 3]  # a vocabulary three tokens short
    norm = "perceiver.norm.weight"
    state[norm] = torch.ones(7)
    with pytest.raises(ValueError, match="2 checkpoint weights do not fit") as raised:
        load_reference_state_dict(model, state)
    assert f"{embed}: checkpoint ({rows - 3}, {width}), model ({rows}, {width})" in str(
        raised.value
    )
    assert f"{norm}: checkpoint (7,), model (" in str(raised.value)


def test_a_padded_vocabulary_shrinks_to_the_tokenizer_as_the_reference_does(tmp_path):
    from transformers import AutoModelForCausalLM, MptConfig

    lm_dir = save_tiny_lm("mpt", tmp_path / "mpt")
    padded = MptConfig.from_pretrained(lm_dir)
    tokens = padded.vocab_size
    padded.vocab_size = tokens + 64  # MPT-1B: 50432 rows for 50277 tokens
    AutoModelForCausalLM.from_config(padded).save_pretrained(lm_dir)
    model, tokenizer = build(lm_dir)
    assert model.lang_model.get_input_embeddings().base.weight.shape[0] == len(tokenizer)
    assert logits(model, tokenizer).shape[-1] == len(tokenizer) == tokens + 3


def test_init_from_starts_every_run_from_the_checkpoint(tiny_world, tiny_lm_dirs, tmp_path):
    spec = base_spec(tiny_world, tiny_lm_dirs["llama"])
    source, _, _ = create_model(spec.model)
    with torch.no_grad():
        for block in source.xattn_blocks().values():
            block.attn_gate.fill_(0.3)
    path = tmp_path / "checkpoint.pt"
    torch.save(export_reference_state_dict(source, trainable_only=True), path)
    started = spec.override({"model.init_from": str(path)})
    assert started.config_id != spec.config_id
    assert spec.config_id == spec.override({"model.init_from": None}).config_id
    model, _, _ = create_model(started.model)
    gates = [float(b.attn_gate.detach()) for b in model.xattn_blocks().values()]
    assert gates == pytest.approx([0.3] * len(gates))
    with pytest.raises(SpecError, match=r"model.init_from: checkpoint .* does not exist"):
        check_spec(spec.override({"model.init_from": str(tmp_path / "nope.pt")}))
    other = spec.override({"model.init_from": str(path), "model.xattn_every": 2})
    with pytest.raises(SpecError, match=r"model.init_from: .* does not fit the model"):
        create_model(other.model)


@pytest.fixture
def tiny_preset(tiny_lm_dirs, tmp_path):
    """A preset of the tiny backbones (local files, as a released model's cached ones)."""
    import open_clip

    clip = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("wb-tiny-vit", pretrained=None).state_dict(), clip)
    name = f"test-tiny-{tmp_path.name}"
    PRESETS.add(name, Preset("wb-tiny-vit", str(clip), str(tiny_lm_dirs["llama"]), 2,
                             PretrainedConfig, 0.0, 0))  # fmt: skip
    return name


def test_wb_eval_evaluates_a_released_checkpoint(tiny_preset, tiny_world, tmp_path):
    preset = PRESETS.get(tiny_preset)
    source, _ = trained(Path(preset.lm), xattn_every=2)
    checkpoint = tmp_path / "released.pt"
    torch.save(export_reference_state_dict(source, trainable_only=True), checkpoint)
    loaded, _, _ = load_released(tiny_preset, checkpoint)
    assert loaded.config.xattn_every == 2
    home = tmp_path / "home"
    out = CliRunner().invoke(app, [
        "eval", "--from-checkpoint", str(checkpoint), "--preset", tiny_preset, "--task", "vqa",
        "--shots", "0", "--trials", "1", "--subset", "4", "--data", tiny_world["eval"],
        "--home", str(home),
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "vqa" in out.output and "per-item results" in out.output
    assert list((home / "released" / tiny_preset / "eval").glob("*.parquet"))
    wrong = tmp_path / "wrong.pt"
    torch.save(export_reference_state_dict(trained(Path(preset.lm))[0], trainable_only=True), wrong)
    with pytest.raises(ValueError, match=f"is not a checkpoint of {tiny_preset}"):
        load_released(tiny_preset, wrong)  # cross-attention every layer, not every 2nd
    both = CliRunner().invoke(app, ["eval", str(tmp_path), "--from-checkpoint", str(checkpoint),
                                    "--preset", tiny_preset, "--task", "vqa"])  # fmt: skip
    assert both.exit_code == 2 and "one of them" in both.output


def test_offline_a_preset_without_its_weights_fails_at_once_naming_them(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    start = time.perf_counter()
    assert missing_downloads("openflamingo-3b") == [
        "huggingface-cli download timm/vit_large_patch14_clip_224.openai  (CLIP ViT-L-14)",
        "huggingface-cli download anas-awadalla/mpt-1b-redpajama-200b  (LM and tokenizer)",
    ]
    with pytest.raises(OSError, match="anas-awadalla/mpt-1b-redpajama-200b") as raised:
        load_released("openflamingo-3b", tmp_path / "checkpoint.pt")
    assert "timm/vit_large_patch14_clip_224.openai" in str(raised.value)
    assert time.perf_counter() - start < 30


def test_growing_the_vocabulary_prints_nothing(tiny_lm_dirs):
    import logging

    from transformers.utils import logging as hf_logging

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    collect, level = Collect(), hf_logging.get_verbosity()
    root = hf_logging.get_logger()  # transformers' own root (it does not propagate further)
    root.addHandler(collect)
    logging.Logger.warning_once.cache_clear()  # type: ignore[attr-defined]  # said once per process
    hf_logging.set_verbosity_info()  # as a script that never silenced transformers
    try:
        build(tiny_lm_dirs["llama"])  # 3 tokens more than the LM's rows: a resize
        assert hf_logging.get_verbosity() == hf_logging.INFO  # restored after the load
    finally:
        hf_logging.set_verbosity(level)
        root.removeHandler(collect)
    noise = [m for m in collect.messages if "resiz" in m or "multivariate" in m]
    assert not noise, noise
