"""The attention kernel on the CPU: PyTorch's fused SDPA against two matmuls and a softmax.

At the shapes of ``cpu_step.py`` (the resampler's latents over an image's tokens, the masked
cross-attention over three images, the LM's causal self-attention), forward and backward, fp32 and
bf16, side by side in one process. It is what ``workbench.model.resampler.attend`` decides on:
fused in fp32, matmuls in half precision on the CPU. Prints times and ratios; asserts nothing.

    python benchmarks/attention.py [--repeats 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

CASES = {  # name: (q, k shapes as (B, H, L, Dh), mask)
    "resampler": ((12, 8, 64, 64), (12, 8, 114, 64), None),
    "cross-attention": ((4, 8, 128, 64), (4, 8, 192, 64), "random"),
    "causal LM": ((4, 4, 128, 64), (4, 4, 128, 64), "causal"),
}


def matmuls(q, k, v, mask):
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


def fused(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def seconds(kernel, q_shape, k_shape, mask, dtype, repeats: int) -> float:
    """Median of forward + backward, after two warm-up calls."""
    q = torch.randn(q_shape, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(k_shape, dtype=dtype, requires_grad=True) for _ in range(2))
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        kernel(q, k, v, mask).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"{args.threads} threads, median of {args.repeats}, forward + backward")
    print(f"{'attention':<16} {'dtype':<9} {'fused':>9} {'matmuls':>9} {'fused/matmuls':>13}")
    for name, (q_shape, k_shape, kind) in CASES.items():
        mask = None
        if kind == "random":
            mask = torch.rand(q_shape[0], 1, q_shape[2], k_shape[2], generator=generator) > 0.5
        elif kind == "causal":
            mask = torch.ones(q_shape[2], k_shape[2], dtype=torch.bool).tril()
        for dtype in (torch.float32, torch.bfloat16):
            a, b = (seconds(kernel, q_shape, k_shape, mask, dtype, args.repeats)
                    for kernel in (fused, matmuls))  # fmt: skip
            label = str(dtype).removeprefix("torch.")
            print(f"{name:<16} {label:<9} {a * 1e3:>7.2f}ms {b * 1e3:>7.2f}ms {a / b:>12.2f}x")


if __name__ == "__main__":
    main()
