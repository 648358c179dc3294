"""What MLflow logging costs a training run, side by side: the same tiny run with tracking on
(every metric, every step, into a fresh SQLite store) and off, alternated, and the ratio of
their training-loop wall times (model building and MLflow start-up excluded; the final
checkpoint, and the flush of queued metrics before it, included).

    python benchmarks/tracking_overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers.utils import logging as hf_logging

from workbench.data.shapes import write_shapes_world
from workbench.data.stream import shard_pattern
from workbench.model.tiny import save_tiny_lm
from workbench.spec import RunSpec
from workbench.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    root = Path(tempfile.mkdtemp(prefix="wb-track-bench-"))
    shards = write_shapes_world(
        root / "world", n_pairs=400, n_docs=200, n_eval=0, image_size=32, per_shard=100
    )
    spec = RunSpec(name="bench").override(
        {
            "model.lm": str(save_tiny_lm("llama", root / "lm")),
            "data.laion_shards": shard_pattern(shards["laion"]),
            "data.mmc4_shards": shard_pattern(shards["mmc4"]),
            "data.mixture.laion_batch_size": 8,
            "data.mixture.mmc4_batch_size": 4,
            "data.mmc4.min_image_bytes": 0,
            "data.mmc4.max_tokens": 64,
            "data.mmc4_filter.threshold": 0.2,
            "train.steps": args.steps,
            "train.log_every": 1,  # gates too, every step: the most logging a run can do
            "train.checkpoint_every": 0,
        }
    )
    walls: dict[bool, list[float]] = {True: [], False: []}
    steps: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(args.repeats):
        for track in (False, True) if repeat % 2 == 0 else (True, False):
            home = root / f"home-{repeat}-{track}"
            result = train(spec, home=home, track=track, show_progress=False)
            walls[track].append(result.final["final/wall_s"])
            steps[track].append(statistics.median(result.curve("time/step_s")))
    metrics_per_step = len(result.history[-1]) - 1  # "skipped" is not logged
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    print(f"{args.steps} steps, {metrics_per_step} metrics per step, {args.repeats} repeats")
    print(f"loop wall  untracked {off:.2f} s  tracked {on:.2f} s  ratio {on / off:.3f}")
    print(
        f"step time  untracked {statistics.median(steps[False]) * 1e3:.1f} ms  "
        f"tracked {statistics.median(steps[True]) * 1e3:.1f} ms"
    )
    print(f"overhead: {100 * (on / off - 1):+.1f}% of the training loop")


if __name__ == "__main__":
    main()
