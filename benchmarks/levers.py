"""Three small CPU levers at ``cpu_step.py``'s shape, each side by side in one process.

- threads: a training step and a generated token, 1 thread against 2 (``torch.set_num_threads``);
- the frozen encoder under ``torch.inference_mode`` against ``torch.no_grad`` (what it uses);
- padded image slots: encoding only the real images (what ``Flamingo.encode_images`` does) against
  encoding every slot (what the reference does), with half of a batch's slots padding.

Prints medians and ratios; asserts nothing.

    python benchmarks/levers.py [--repeats 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).parent))
from cpu_step import alternate, batch, timed, train_step, write_lm

from workbench.model import create_model_and_transforms


def with_threads(count: int, fn):
    def run() -> float:
        torch.set_num_threads(count)
        try:
            return fn()
        finally:
            torch.set_num_threads(2)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as folder:
        lm_dir = write_lm(Path(folder) / "lm")
        model, _, tokenizer = create_model_and_transforms("wb-bench-vit", str(lm_dir))
    x, ids, mask, labels = batch(tokenizer, 128, 3)
    step = train_step(model, lambda: model(x, None, ids, mask, labels).loss, ours=True)
    rows = []
    medians = alternate({"1": with_threads(1, step), "2": with_threads(2, step)}, args.repeats)
    rows.append(("interleaved step, 1 thread / 2", medians["1"], medians["2"]))
    gx, gids, gmask, _ = batch(tokenizer, 40, 3, rows=1)
    new = 20
    generate = timed(lambda: model.generate(gx, None, gids, gmask, max_new_tokens=new,
                                            min_new_tokens=new))  # fmt: skip
    medians = alternate({"1": with_threads(1, generate), "2": with_threads(2, generate)},
                        max(args.repeats // 2, 2), warmup=1)  # fmt: skip
    rows.append(("generated token, 1 thread / 2", medians["1"] / new, medians["2"] / new))
    images = x.flatten(0, 1)  # (12, 3, H, W)
    encoder = model.vision

    def no_grad() -> None:
        with torch.no_grad():
            encoder(images)

    def inference() -> None:
        with torch.inference_mode():
            encoder._encode(images)

    medians = alternate({"no_grad": timed(no_grad), "inference": timed(inference)}, args.repeats)
    rows.append(("encoder, no_grad / inference_mode", medians["no_grad"], medians["inference"]))
    image_mask = torch.tensor([[True, True, True], [True, False, False]] * 2)
    pair = (x, ids.masked_fill(ids == tokenizer.convert_tokens_to_ids("<image>"), 0), mask)

    def every_slot() -> None:
        with torch.no_grad():
            model.encode_images(pair[0], None, pair[1])

    def real_only() -> None:
        with torch.no_grad():
            model.encode_images(pair[0], image_mask, pair[1])

    medians = alternate({"all": timed(every_slot), "real": timed(real_only)}, args.repeats)
    rows.append(("encode 12 slots / the 8 real ones", medians["all"], medians["real"]))
    print(f"2 threads unless named, median of {args.repeats}")
    print(f"{'lever (a / b)':<36} {'a':>9} {'b':>9} {'a/b':>6}")
    for name, a, b in rows:
        print(f"{name:<36} {a * 1e3:>7.1f}ms {b * 1e3:>7.1f}ms {a / b:>5.2f}x")


if __name__ == "__main__":
    main()
