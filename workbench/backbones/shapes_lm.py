"""The shapes LM: a small LLaMA-style causal LM and a BPE tokenizer, trained on shapes text.

The text is what a Flamingo trained on the shapes world reads: captions, MMC4-style document
text, and the evaluation prompt formats (``Output: ...``, ``Question: ... Short answer: ...``).
Saved with ``save_pretrained`` and loaded back with ``AutoModelForCausalLM`` /
``AutoTokenizer.from_pretrained``, like any Hugging Face checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from workbench.data.scenes import FILLER, caption, questions_for, random_scene
from workbench.model.tiny import train_tiny_tokenizer


@dataclass(frozen=True)
class LMRecipe:
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    vocab: int = 1024
    steps: int = 300
    batch_size: int = 32
    block: int = 128
    lr: float = 2e-3
    warmup: int = 30


def shapes_texts(rng: np.random.Generator) -> Iterator[str]:
    """An endless mix of the text kinds the shapes world contains."""
    while True:
        scene = random_scene(rng)
        kind = rng.random()
        if kind < 0.3:
            yield caption(scene, rng)
        elif kind < 0.5:
            yield f"Output:{caption(scene, rng)}"
        elif kind < 0.75:
            question, answer, _ = questions_for(scene, rng)[int(rng.integers(2))]
            yield f"Question:{question} Short answer:{answer}"
        else:
            others = [caption(random_scene(rng), rng) for _ in range(int(rng.integers(1, 4)))]
            fillers = list(rng.choice(FILLER, size=int(rng.integers(1, 3)), replace=False))
            sentences = [caption(scene, rng), *others, *fillers]
            yield " ".join(sentences[i] for i in rng.permutation(len(sentences)))


def _blocks(
    tokenizer: object, rng: np.random.Generator, block: int, batch: int
) -> Iterator[torch.Tensor]:
    """(batch, block) token ids: texts joined by eos and cut into blocks."""
    texts = shapes_texts(rng)
    buffer: list[int] = []
    eos = tokenizer.eos_token_id  # type: ignore[attr-defined]
    while True:
        while len(buffer) < block * batch:
            buffer += [*tokenizer(next(texts)).input_ids, eos]  # type: ignore[operator]
        chunk, buffer = buffer[: block * batch], buffer[block * batch :]
        yield torch.tensor(chunk).view(batch, block)


def train_lm(
    recipe: LMRecipe, out_dir: Path, seed: int, progress: Callable[[int, float], None] | None = None
) -> Path:
    rng = np.random.default_rng([seed, 20])
    corpus = [t for t, _ in zip(shapes_texts(rng), range(20_000), strict=False)]
    tokenizer = train_tiny_tokenizer(corpus, vocab_size=recipe.vocab)
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden,
        intermediate_size=3 * recipe.hidden,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=max(recipe.heads // 2, 1),
        max_position_embeddings=1024,
        bos_token_id=eos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.1)
    model.train()
    batches = _blocks(tokenizer, rng, recipe.block, recipe.batch_size)
    for step in range(recipe.steps):
        scale = (
            min(1.0, (step + 1) / recipe.warmup)
            * 0.5
            * (1 + math.cos(math.pi * step / recipe.steps))
        )
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * scale
        ids = next(batches)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if progress:
            progress(step, loss.item())
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@torch.no_grad()
def evaluate_lm(lm_dir: str | Path, seed: int, batches: int = 8) -> dict[str, float]:
    """Held-out perplexity (texts from an RNG stream the training never used)."""
    model = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    stream = _blocks(tokenizer, np.random.default_rng([seed, 21]), 128, 16)
    losses = [
        model(input_ids=ids, labels=ids).loss.item()
        for ids, _ in zip(stream, range(batches), strict=False)
    ]
    return {
        "heldout_perplexity": round(float(math.exp(np.mean(losses))), 4),
        "heldout_tokens": batches * 16 * 128,
    }
