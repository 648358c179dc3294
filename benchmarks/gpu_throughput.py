"""Training and generation throughput of the workbench against the reference on one GPU.

Shape (OpenFlamingo-3B-like, random weights, nothing downloaded): open_clip ViT-L-14; a LLaMA
shaped like TinyLlama-1.1B (hidden 2048, 22 layers, 32 heads, 4 KV heads, intermediate 5632,
vocabulary 32000 + the Flamingo tokens); cross-attention every layer; Perceiver 6 x 64.
Workloads: interleaved (256 tokens x 6 images) at batch 32 and 64, pairs (32 tokens x 1 image)
at batch 128, greedy generation of 20 tokens after 3 images at batch 1. Both run bf16 autocast
over fp32 weights (the reference's recipe); the workbench also with its feature cache warm.
Printed: step time, samples/s, tokens/s, MFU, peak memory and the ratios (reference /
workbench). MFU = model FLOPs / step time / peak (989.5 TFLOP/s: H200 bf16 dense), the FLOPs
counted by :func:`model_flops`.

``--dry-run`` runs the same code at a reduced shape on the CPU (CI runs it).

    PYTHONPATH=.nox/parity-overlay python benchmarks/gpu_throughput.py [--dry-run]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_step import batch, reference_of, training_steps, write_lm

from workbench.model import create_model_and_transforms
from workbench.model.features import FeatureCache
from workbench.train.flops import FlopCounter

PEAK_TFLOPS = 989.5


@dataclass(frozen=True)
class Shape:
    vision: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    workloads: tuple[tuple[str, int, int, int], ...]  # name, batch, tokens, images
    vision_tokens: int  # per image, class token included
    vision_width: int


FULL = Shape("ViT-L-14", 2048, 22, 32, 4, 5632, 32000,
             (("interleaved", 32, 256, 6), ("interleaved", 64, 256, 6), ("pairs", 128, 32, 1)),
             257, 1024)  # fmt: skip
DRY = Shape("wb-bench-vit", 256, 2, 4, 2, 512, 8000,
            (("interleaved", 2, 64, 3), ("pairs", 4, 32, 1)), 50, 256)  # fmt: skip


def lm_config(shape: Shape) -> LlamaConfig:
    return LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                       num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                       intermediate_size=shape.intermediate, vocab_size=shape.vocab,
                       max_position_embeddings=2048)  # fmt: skip


def model_flops(model, rows: int, tokens: int, images: int) -> float:
    """FLOPs of one training step, as the issue counts them (:mod:`workbench.train.flops`,
    which every run also logs as ``compute/flops``)."""
    return FlopCounter.of(model).step([tokens] * rows, rows * images)


def median_time(step, repeats: int, device: torch.device) -> float:
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="reduced shape on the CPU")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    shape = DRY if args.dry_run else FULL
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    repeats = 2 if args.dry_run else args.repeats
    dtype = torch.bfloat16
    with tempfile.TemporaryDirectory() as folder:
        lm_dir = write_lm(Path(folder) / "lm", lm_config(shape))
        torch.manual_seed(0)
        model, _, tokenizer = create_model_and_transforms(shape.vision, str(lm_dir))
        reference = reference_of(model, tokenizer, 1, shape.vision)
        cached, _, _ = create_model_and_transforms(shape.vision, str(lm_dir))
        cached.load_state_dict(model.state_dict())
        cached.vision.cache = FeatureCache(Path(folder) / "features")
        for m in (model, reference, cached):
            m.to(device).train()
        print(f"device {device}, shape {'dry-run' if args.dry_run else 'OpenFlamingo-3B-like'}, "
              f"median of {repeats}; ratio = reference / workbench")  # fmt: skip
        print(f"{'workload':<12} {'batch':>5} {'model':<10} {'s/step':>8} {'samples/s':>9} "
              f"{'tokens/s':>9} {'MFU':>6} {'peak GB':>7} {'ratio':>6}")  # fmt: skip
        for name, rows, tokens, images in shape.workloads:
            inputs = [t.to(device) for t in batch(tokenizer, tokens, images, rows=rows)]
            flops = model_flops(model, rows, tokens, images)
            runs = training_steps(reference, model, cached, inputs)  # warms the cache
            base = None
            for label, step in zip(
                ("reference", "workbench", "warm cache"), runs.values(), strict=True
            ):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with torch.autocast(device.type, dtype=dtype):
                    seconds = median_time(step, repeats, device)
                peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0
                base = base or seconds
                mfu = flops / seconds / (PEAK_TFLOPS * 1e12)
                print(f"{name:<12} {rows:>5} {label:<10} {seconds:>8.3f} {rows / seconds:>9.1f} "
                      f"{rows * tokens / seconds:>9.0f} {mfu:>6.1%} {peak:>7.1f} "
                      f"{base / seconds:>5.2f}x")  # fmt: skip
        x, ids, mask, _ = (t.to(device) for t in batch(tokenizer, 40, 3, rows=1))
        new = 20
        generations = {
            "reference": lambda: reference.generate(x[:, :, None], ids, mask, max_new_tokens=new,
                                                    min_new_tokens=new, num_beams=1),
            "workbench": lambda: model.generate(x, None, ids, mask, max_new_tokens=new,
                                                min_new_tokens=new),
        }  # fmt: skip
        base = None
        for label, generate in generations.items():
            with torch.autocast(device.type, dtype=dtype):
                seconds = median_time(generate, max(repeats // 2, 2), device) / new
            base = base or seconds
            print(f"{'generate':<12} {1:>5} {label:<10} {seconds * 1e3:>6.1f}ms/token "
                  f"{'':>28} {base / seconds:>5.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
