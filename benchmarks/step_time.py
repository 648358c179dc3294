"""Training-step time of the workbench model against the reference, side by side.

Same tiny shape, same weights (the reference's, converted), same batch, one process: a
forward + backward + AdamW step of each, alternated, and the ratio of their medians.
Each model trains what its own recipe trains (the reference: resampler, cross-attention and the
whole input-embedding matrix; the workbench: resampler, cross-attention, two special rows).

    nox -s parity -- --co -q   # once, to install the reference overlay
    PYTHONPATH=.nox/parity-overlay python benchmarks/step_time.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_parity import build_reference, interleaved_batch

from workbench.model import create_model_and_transforms
from workbench.model.convert import load_reference_state_dict
from workbench.model.tiny import save_tiny_lm


def step_fn(model, forward):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)

    def step() -> float:
        start = time.perf_counter()
        loss = forward()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step, sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--xattn-every", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    lm_dir = save_tiny_lm("llama", Path(tempfile.mkdtemp()) / "llama")
    reference, tokenizer = build_reference(lm_dir, args.xattn_every)
    model, _, _ = create_model_and_transforms(
        "wb-tiny-vit", str(lm_dir), xattn_every=args.xattn_every
    )
    load_reference_state_dict(model, reference.state_dict(), strict=True)
    reference.train(), model.train()

    images, input_ids, attention_mask = interleaved_batch(tokenizer)
    repeat = (args.batch + 1) // 2
    images = images.repeat(repeat, 1, 1, 1, 1)[: args.batch]
    input_ids = input_ids.repeat(repeat, 1)[: args.batch]
    attention_mask = attention_mask.repeat(repeat, 1)[: args.batch]
    labels = input_ids.masked_fill(attention_mask == 0, -100)

    ours, ours_params = step_fn(
        model, lambda: model(images, None, input_ids, attention_mask, labels).loss
    )
    ref, ref_params = step_fn(
        reference,
        lambda: reference(images[:, :, None], input_ids, attention_mask, labels).loss,
    )
    times: dict[str, list[float]] = {"reference": [], "workbench": []}
    for i in range(args.steps + 3):  # alternate, so drift hits both alike; 3 warm-up steps
        for name, step in (("reference", ref), ("workbench", ours)):
            elapsed = step()
            if i >= 3:
                times[name].append(elapsed)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"shape: wb-tiny-vit, tiny llama (4 layers, d=64), xattn every {args.xattn_every}, "
        f"batch {args.batch}, {input_ids.shape[1]} tokens, 3 images per sequence, "
        f"{args.threads} threads, {args.steps} steps"
    )
    print(f"reference: median step {medians['reference'] * 1e3:.1f} ms, {ref_params:,} trainable")
    print(f"workbench: median step {medians['workbench'] * 1e3:.1f} ms, {ours_params:,} trainable")
    print(f"speed-up (reference / workbench): {medians['reference'] / medians['workbench']:.2f}x")


if __name__ == "__main__":
    main()
