"""The workbench against the reference on the CPU, at one shape, side by side in one process.

Shape: a ViT of width 256, 4 layers, patch 16 at 112 px (``wb-bench-vit``); a LLaMA of hidden
256, 4 layers, 4 heads, intermediate 704, vocabulary 8,000 + the Flamingo tokens; cross-attention
every 1, 2 and 4 layers. Workloads: an interleaved training step (4 x 128 tokens, 3 images
each), a pair step (4 x 32 tokens, 1 image each), greedy generation of 20 tokens after a
3-image prompt. Both models hold the same weights (the workbench's, exported into the
reference); each trains what its recipe trains (the reference: resampler, cross-attention and
the whole input matrix; the workbench: resampler, cross-attention, the special rows). Their
steps alternate, so drift hits both alike; the workbench runs cold and with its feature cache
warm. It prints median times and the ratios (reference / workbench) and asserts nothing.

    nox -s parity      # installs the reference overlay (and runs this with --quick)
    PYTHONPATH=.nox/parity-overlay python benchmarks/cpu_step.py [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from workbench.model import create_model_and_transforms
from workbench.model.convert import export_reference_state_dict
from workbench.model.features import FeatureCache
from workbench.train.optim import build_optimizer
from workbench.train.parallelize import compile_blocks

VOCAB, IMAGE = 8000, 112
WORKLOADS = {"interleaved": (128, 3), "pairs": (32, 1)}  # tokens, images per row; batch 4


def write_lm(folder: Path, config: LlamaConfig | None = None) -> Path:
    """A random LLaMA (by default the benchmark's) and a word-level tokenizer with exactly its
    vocabulary size, its last token the end of text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = config or LlamaConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                   intermediate_size=704, vocab_size=VOCAB,
                                   max_position_embeddings=512)  # fmt: skip
    size = config.vocab_size
    config.eos_token_id = config.bos_token_id = size - 1
    vocab = {f"w{i}": i for i in range(size - 1)} | {"<|endoftext|>": size - 1}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reference_of(model, tokenizer, xattn_every: int, vision: str = "wb-bench-vit"):
    """The reference's model with ``model``'s weights (its own trainable set)."""
    import open_clip
    from open_flamingo.src.flamingo import Flamingo as ReferenceFlamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance
    from transformers import AutoModelForCausalLM

    clip = open_clip.create_model(vision, pretrained=None)
    clip.visual.output_tokens = True
    lm = AutoModelForCausalLM.from_config(model.lang_model.config)
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.layers")
    reference = ReferenceFlamingo(
        clip, lm, tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
        tokenizer.convert_tokens_to_ids("<image>"), vis_dim=model.vision.dim,
        cross_attn_every_n_layers=xattn_every,
    )  # fmt: skip
    reference.load_state_dict(export_reference_state_dict(model, naming="transformers5"))
    reference.requires_grad_(False)
    reference.perceiver.requires_grad_(True)
    reference.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    reference.lang_encoder.get_input_embeddings().requires_grad_(True)
    return reference


def batch(tokenizer, tokens: int, images: int, rows: int = 4, seed: int = 0):
    """(images (B, T, 3, H, W), ids, mask, labels): ``<image>`` every tokens/images tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB - 1, (rows, tokens), generator=generator)
    media, eoc = (tokenizer.convert_tokens_to_ids(t) for t in ("<image>", "<|endofchunk|>"))
    for k in range(images):
        at = k * (tokens // images)
        ids[:, at] = media
        if at:
            ids[:, at - 1] = eoc
    pixels = torch.randn(rows, images, 3, IMAGE, IMAGE, generator=generator)
    labels = ids.masked_fill(ids == media, -100)
    return pixels, ids, torch.ones_like(ids), labels


def train_step(model, forward: Callable[[], torch.Tensor], ours: bool) -> Callable[[], float]:
    """One optimizer step: the workbench with its own optimizer (``build_optimizer``), the
    reference with its training script's (``torch.optim.AdamW``, PyTorch's defaults)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (
        build_optimizer(model, lr=1e-4, weight_decay=0.1)
        if ours
        else torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    )

    def step() -> float:
        start = time.perf_counter()
        forward().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def training_steps(reference, model, cached, inputs) -> dict[str, Callable[[], float]]:
    """One training step of each on ``inputs``; the cache is warmed with its images first."""
    x, ids, mask, labels = inputs
    with torch.no_grad():
        cached(x, None, ids, mask)
    return {
        "reference": train_step(
            reference, lambda: reference(x[:, :, None], ids, mask, labels).loss, ours=False
        ),
        "workbench": train_step(model, lambda: model(x, None, ids, mask, labels).loss, ours=True),
        "cached": train_step(cached, lambda: cached(x, None, ids, mask, labels).loss, ours=True),
    }


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def alternate(steps: dict[str, Callable[[], float]], repeats: int, warmup: int = 2):
    """Median seconds of each, their calls interleaved."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats + warmup):
        for name, step in steps.items():
            elapsed = step()
            if i >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(
    lm_dir: Path,
    xattn_every: int,
    repeats: int,
    cache_dir: Path,
    compile: bool = False,
    generate_kwargs: dict | None = None,
) -> list[tuple]:
    """Rows (workload, xattn_every, reference s, workbench s, workbench warm-cache s)."""
    model, _, tokenizer = create_model_and_transforms("wb-bench-vit", str(lm_dir),
                                                      xattn_every=xattn_every)  # fmt: skip
    reference = reference_of(model, tokenizer, xattn_every)
    cached, _, _ = create_model_and_transforms("wb-bench-vit", str(lm_dir),
                                               xattn_every=xattn_every)  # fmt: skip
    cached.load_state_dict(model.state_dict())
    cached.vision.cache = FeatureCache(cache_dir / f"every{xattn_every}")
    if compile:  # train.compile: the workbench's decoder layers and resampler
        compile_blocks(model)
        compile_blocks(cached)
    rows = []
    for name, (tokens, count) in WORKLOADS.items():
        steps = training_steps(reference, model, cached, batch(tokenizer, tokens, count))
        medians = alternate(steps, repeats)
        rows.append((name, xattn_every, medians["reference"], medians["workbench"],
                     medians["cached"]))  # fmt: skip
    x, ids, mask, _ = batch(tokenizer, 40, 3, rows=1)
    new = 20
    ours = generate_kwargs or {}
    steps = {
        "reference": timed(lambda: reference.generate(x[:, :, None], ids, mask, max_new_tokens=new,
                                                      min_new_tokens=new, num_beams=1)),
        "workbench": timed(lambda: model.generate(x, None, ids, mask, max_new_tokens=new,
                                                  min_new_tokens=new, **ours)),
        "cached": timed(lambda: cached.generate(x, None, ids, mask, max_new_tokens=new,
                                                min_new_tokens=new, **ours)),
    }  # fmt: skip
    medians = alternate(steps, max(repeats // 2, 2), warmup=1)
    rows.append(("generate/token", xattn_every, *(medians[k] / new for k in steps)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed repeats of each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--xattn-every", default="1,2,4")
    parser.add_argument("--quick", action="store_true", help="3 repeats (CI)")
    parser.add_argument("--compile", action="store_true", help="the workbench with train.compile")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="both under CPU bf16 autocast (the reference's amp_bf16)",
    )
    parser.add_argument(
        "--static-cache",
        action="store_true",
        help="the workbench generates with transformers' static KV cache",
    )
    args = parser.parse_args()
    if args.bf16 and args.static_cache:
        parser.error("--static-cache cannot run under --bf16 (Flamingo.generate refuses it)")
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    repeats = 3 if args.quick else args.steps
    with tempfile.TemporaryDirectory() as folder:
        lm_dir = write_lm(Path(folder) / "lm")
        rows = []
        generate = {"cache_implementation": "static"} if args.static_cache else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            for every in (int(e) for e in args.xattn_every.split(",")):
                rows += measure(lm_dir, every, repeats, Path(folder) / "features", args.compile,
                                generate)  # fmt: skip
    on = {"the workbench compiled": args.compile, "bf16 autocast": args.bf16,
          "static KV cache": args.static_cache}  # fmt: skip
    levers = [name for name, used in on.items() if used]
    print(
        f"{args.threads} threads, median of {repeats}{''.join(', ' + n for n in levers)}; "
        "ratio = reference / workbench"
    )
    print(f"{'workload':<15} {'every':>5} {'reference':>10} {'workbench':>10} {'ratio':>6} "
          f"{'warm cache':>10} {'ratio':>6}")  # fmt: skip
    for name, every, ref, ours, cached in rows:
        unit = 1e3
        print(f"{name:<15} {every:>5} {ref * unit:>8.1f}ms {ours * unit:>8.1f}ms "
              f"{ref / ours:>5.2f}x {cached * unit:>8.1f}ms {ref / cached:>5.2f}x")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
