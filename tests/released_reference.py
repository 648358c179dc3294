"""The released OpenFlamingo families, small, as the reference (open-flamingo 2.0.1) makes them.

Run as a script in the environment of one transformers version (the project's, or the 4.57
overlay the released checkpoints were written under), it writes for every family in
:data:`FAMILIES`, under ``OUT/<family>/``: the LM (``lm/``, ``save_pretrained``, as on the hub)
and the CLIP weights (``clip.pt``), the reference's own model built from them by its own
``create_model_and_transforms`` (so its vocabulary resize, freezing and layer naming are the
reference's), its trimmed state dict (``checkpoint.pt``, by the reference's
``filter_state_dict_to_trainable``, as released) and a training checkpoint of its script's layout
(``train-checkpoint.pt``, DDP ``module.`` prefixes), and what it computes on a fixed batch
(``expected.pt``: logits, loss, greedy generations). ``--check-export`` instead loads the
workbench's exports (``OUT/<family>/export-full.pt``, ``export-trimmed.pt``) into the reference
strictly and writes ``export-check.json``.

Only torch, transformers, open_clip and open_flamingo are imported: the workbench itself may not
run under the other transformers.

    PYTHONPATH=.nox/tf457-overlay python tests/released_reference.py OUT CLIP_CONFIGS TOKENIZER
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch

#: Each released family at a small shape with its LM's real configuration keys: padded
#: vocabularies (MPT, RedPajama), ALiBi (MPT), an untied head and sequential residual
#: (RedPajama-INCITE-3B, GPT-NeoX), an untied head and grouped-query attention (LLaMA).
#: ``pad_vocab``: the LM's embedding rows past the tokenizer (MPT-1B/7B and RedPajama: 50432
#: for 50280 tokens); the reference's resize shrinks them.
FAMILIES: dict[str, dict[str, Any]] = {
    "openflamingo-3b": {"model_type": "mpt", "xattn_every": 1, "pad_vocab": 61,
                        "config": {"d_model": 64, "n_heads": 4, "n_layers": 4,
                                   "expansion_ratio": 4, "max_seq_len": 256, "no_bias": True,
                                   "attn_config": {"alibi": True}}},
    "openflamingo-4b": {"model_type": "gpt_neox", "xattn_every": 2, "pad_vocab": 61,
                        "config": {"hidden_size": 64, "num_hidden_layers": 4,
                                   "num_attention_heads": 4, "intermediate_size": 256,
                                   "max_position_embeddings": 256, "rotary_pct": 1.0,
                                   "use_parallel_residual": False, "tie_word_embeddings": False,
                                   "hidden_dropout": 0.0, "attention_dropout": 0.0}},
    "openflamingo-9b": {"model_type": "mpt", "xattn_every": 4, "pad_vocab": 61,
                        "config": {"d_model": 64, "n_heads": 4, "n_layers": 8,
                                   "expansion_ratio": 4, "max_seq_len": 256, "no_bias": True,
                                   "attn_config": {"alibi": True}}},
    "openflamingo-9b-llama": {"model_type": "llama", "xattn_every": 4, "pad_vocab": 0,
                              "config": {"hidden_size": 64, "num_hidden_layers": 8,
                                         "num_attention_heads": 4, "num_key_value_heads": 2,
                                         "intermediate_size": 128,
                                         "max_position_embeddings": 256,
                                         "tie_word_embeddings": False}},
}  # fmt: skip
TEXTS = [
    "<image>a red circle.<|endofchunk|><image>two blue squares<|endofchunk|><image>a star",
    "<image>Output: a<|endofchunk|><image>Output: one cyan star<|endofchunk|><image>Output:",
]
IMAGE_SIZE, NEW_TOKENS = 32, 8
EOS = "<|endoftext|>"  # the tiny tokenizer's (workbench.model.tiny)


def batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    """The fixed batch: 2 rows of 3 images; labels ignore pad and ``<image>``, as the
    reference's training does."""
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    images = torch.randn(
        2, 3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1)
    )
    labels = encoded.input_ids.clone()
    labels[encoded.attention_mask == 0] = -100
    labels[labels == tokenizer.convert_tokens_to_ids("<image>")] = -100
    return {"images": images, "input_ids": encoded.input_ids,
            "attention_mask": encoded.attention_mask, "labels": labels}  # fmt: skip


def write_backbones(family: str, out: Path, tokenizer_dir: Path, seed: int) -> None:
    """The family's LM (random, its vocabulary padded) and the tiny CLIP, as released files."""
    import open_clip
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    facts = FAMILIES[family]
    tokenizer = PreTrainedTokenizerFast(  # the file, not its config: written by another version
        tokenizer_file=str(tokenizer_dir / "tokenizer.json"), eos_token=EOS, bos_token=EOS
    )
    eos = tokenizer.eos_token_id
    config = AutoConfig.for_model(
        facts["model_type"], vocab_size=len(tokenizer) + facts["pad_vocab"], bos_token_id=eos,
        eos_token_id=eos, **facts["config"],
    )  # fmt: skip
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out / "lm")
    tokenizer.save_pretrained(out / "lm")
    clip = open_clip.create_model("wb-tiny-vit", pretrained=None)
    torch.save(clip.state_dict(), out / "clip.pt")


def reference_model(family: str, out: Path) -> tuple[Any, Any]:
    """The reference's model of the files under ``out`` (its own factory), gates opened."""
    from open_flamingo import create_model_and_transforms

    model, _, tokenizer = create_model_and_transforms(
        "wb-tiny-vit", str(out / "clip.pt"), str(out / "lm"), str(out / "lm"),
        cross_attn_every_n_layers=FAMILIES[family]["xattn_every"], use_local_files=True,
    )  # fmt: skip
    return model, tokenizer


def filter_to_trainable(model: Any) -> dict[str, torch.Tensor]:
    """The reference training script's trimmed state dict (its own function; its module imports
    wandb, which a checkpoint does not need)."""
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))
    from open_flamingo.train.train_utils import filter_state_dict_to_trainable

    return filter_state_dict_to_trainable(model, model.state_dict())


def build(family: str, out: Path, tokenizer_dir: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_backbones(family, out, tokenizer_dir, seed=0)
    torch.manual_seed(1)
    model, tokenizer = reference_model(family, out)
    with torch.no_grad():  # trained-looking weights: open gates, non-zero special rows
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.uniform_(0.5, 1.0)
                layer.ff_gate.uniform_(0.5, 1.0)
        embeddings = model.lang_encoder.get_input_embeddings().weight
        embeddings[-3:] = torch.randn_like(embeddings[-3:]) * embeddings.std()
    model.eval()
    trimmed = filter_to_trainable(model)
    torch.save(trimmed, out / "checkpoint.pt")
    torch.save({"epoch": 0, "model_state_dict": {f"module.{k}": v for k, v in trimmed.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": []},
                "lr_scheduler_state_dict": {}}, out / "train-checkpoint.pt")  # fmt: skip
    inputs = batch(tokenizer)
    with torch.no_grad():
        output = model(
            inputs["images"][:, :, None], inputs["input_ids"],
            attention_mask=inputs["attention_mask"], labels=inputs["labels"],
        )  # fmt: skip
        generations = []
        for row in range(2):  # batch 1: the reference's generate has no left-padding support
            ids = inputs["input_ids"][row : row + 1, : int(inputs["attention_mask"][row].sum())]
            generated = model.generate(inputs["images"][row : row + 1, :, None], ids,
                                       max_new_tokens=NEW_TOKENS, num_beams=1)  # fmt: skip
            generations.append(generated[0].tolist())
    torch.save({**inputs, "logits": output.logits, "loss": output.loss,
                "generations": generations, "trimmed_keys": sorted(trimmed),
                "full_keys": sorted(model.state_dict()),
                "vocab": model.lang_encoder.get_input_embeddings().weight.shape[0]},
               out / "expected.pt")  # fmt: skip


def check_export(family: str, out: Path) -> dict[str, Any]:
    """Loads the workbench's exports into fresh reference models: the full one strictly, the
    trimmed one as the reference loads a released checkpoint (``strict=False``)."""
    model, _ = reference_model(family, out)
    full = torch.load(out / "export-full.pt", weights_only=True)
    model.load_state_dict(full, strict=True)  # raises on any missing or unexpected key
    state = model.state_dict()
    equal = all(torch.equal(state[k], v) for k, v in full.items())
    fresh, _ = reference_model(family, out)
    trimmed = torch.load(out / "export-trimmed.pt", weights_only=True)
    unexpected = fresh.load_state_dict(trimmed, strict=False).unexpected_keys
    loaded = fresh.state_dict()
    same = all(torch.equal(loaded[k], v) for k, v in trimmed.items())
    return {"strict_full_load": True, "values_equal": equal, "trimmed_unexpected": unexpected,
            "trimmed_values_equal": same}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("clip_configs", type=Path)
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("--check-export", action="store_true")
    args = parser.parse_args()
    import open_clip
    import transformers

    open_clip.add_model_config(args.clip_configs)
    (args.out / "transformers.txt").write_text(transformers.__version__)
    for family in FAMILIES:
        if args.check_export:
            result = check_export(family, args.out / family)
            (args.out / family / "export-check.json").write_text(json.dumps(result))
        else:
            build(family, args.out / family, args.tokenizer)


if __name__ == "__main__":
    main()
