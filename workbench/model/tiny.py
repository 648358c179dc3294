"""Tiny random language models of every supported family, saved like real checkpoints.

Tests and demos cannot download weights, so they write a few-layer LM and a byte-level BPE
tokenizer with ``save_pretrained`` and load them back through the same
``AutoModelForCausalLM`` / ``AutoTokenizer`` path that real weights take. (Pretrained small
backbones for the shapes world live in ``workbench.backbones``.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MptConfig,
    OPTConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from workbench.registry import Registry

EOS_TOKEN = "<|endoftext|>"
_CORPUS = [
    "a red circle in the top left corner.",
    "two blue squares and a green triangle on a striped background.",
    "Output: a small yellow star next to a large purple circle.",
    "Question: what colour is the square? Short answer: orange",
    "Question: how many shapes are there? Short answer: three",
    "the picture shows one cyan triangle at the bottom right.",
]

_SIZES = {"num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 512}
_GPT2_NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
_LLAMA_LIKE = {**_SIZES, "hidden_size": 64, "intermediate_size": 128, "num_key_value_heads": 2}

#: Tiny (4 layers, width 64, no dropout) config of each family, keyed by ``model_type``: the
#: config class and its size arguments. Untied and tied output heads are both represented.
TinyConfig = tuple[Callable[..., PretrainedConfig], dict[str, Any]]
TINY_LM_CONFIGS: Registry[TinyConfig] = Registry("tiny_lm")
_TINY: dict[str, TinyConfig] = {
    "llama": (LlamaConfig, _LLAMA_LIKE),
    "qwen2": (Qwen2Config, {**_LLAMA_LIKE, "tie_word_embeddings": True}),
    "gpt_neox": (
        GPTNeoXConfig,
        {**_SIZES, "hidden_size": 64, "intermediate_size": 128, "hidden_dropout": 0.0},
    ),
    "opt": (
        OPTConfig,
        {**_SIZES, "hidden_size": 64, "ffn_dim": 128, "word_embed_proj_dim": 64, "dropout": 0.0},
    ),
    "mpt": (
        MptConfig,
        {"d_model": 64, "n_heads": 4, "n_layers": 4, "expansion_ratio": 2, "max_seq_len": 512},
    ),
    "gpt2": (
        GPT2Config,
        {"n_embd": 64, "n_layer": 4, "n_head": 4, "n_positions": 512, **_GPT2_NO_DROPOUT},
    ),
}
for _name, _entry in _TINY.items():
    TINY_LM_CONFIGS.add(_name, _entry)


def train_tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 320):
    """A byte-level BPE tokenizer (every string encodes) trained on a few sentences."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus or _CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)


def save_tiny_lm(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Writes a random 4-layer LM of ``family`` and its tokenizer to ``out_dir``.

    Args:
        family: a ``config.model_type`` registered in :data:`TINY_LM_CONFIGS`.
        out_dir: target directory (created).
        seed: weight initialisation seed.

    Returns:
        ``out_dir``, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    config_class, sizes = TINY_LM_CONFIGS.get(family)
    out = Path(out_dir)
    tokenizer = train_tiny_tokenizer()
    eos = tokenizer.eos_token_id
    config = config_class(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, **sizes)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
