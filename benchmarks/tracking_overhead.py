"""What MLflow logging costs a training run, side by side in one process: the same tiny run
untracked, tracked by :class:`workbench.track.Tracker` (its own writer thread, batching every
2 s), and tracked through MLflow's asynchronous logging (``log_batch(synchronous=False)`` per
step, flushed by waiting on its futures), alternated; every metric, every step, into a fresh
SQLite store. It prints the ratios of their training-loop wall times (model building and MLflow
start-up excluded; the final checkpoint, and the flush of queued metrics before it, included),
then each design's cost alone, without training (the steadier number on a busy machine).

    python benchmarks/tracking_overhead.py --steps 60 --repeats 3
    python benchmarks/tracking_overhead.py --repeats 0   # logging alone, in a minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers.utils import logging as hf_logging

from workbench import track
from workbench.data.shapes import write_shapes_world
from workbench.data.stream import shard_pattern
from workbench.model.tiny import save_tiny_lm
from workbench.spec import RunSpec
from workbench.train.loop import train

MODES = ("untracked", "own-thread", "mlflow-async")


class MlflowAsyncTracker(track.Tracker):
    """MLflow's asynchronous logging instead of the writer thread: one ``log_batch(...,
    synchronous=False)`` per call; :meth:`flush` waits for their futures."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopped.set()  # the writer thread has nothing to write
        self._operations: list[Any] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [track.Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._operations.append(self.client.log_batch(self.run_id, batch, synchronous=False))  # type: ignore[arg-type]

    def flush(self) -> None:
        operations, self._operations = self._operations, []
        for operation in operations:
            operation.wait()


def bench_spec(root: Path, steps: int) -> RunSpec:
    shards = write_shapes_world(
        root / "world", n_pairs=400, n_docs=200, n_eval=0, image_size=32, per_shard=100
    )
    return RunSpec(name="bench").override(
        {
            "model.lm": str(save_tiny_lm("llama", root / "lm")),
            "data.laion_shards": shard_pattern(shards["laion"]),
            "data.mmc4_shards": shard_pattern(shards["mmc4"]),
            "data.mixture.laion_batch_size": 8,
            "data.mixture.mmc4_batch_size": 4,
            "data.mmc4.min_image_bytes": 0,
            "data.mmc4.max_tokens": 64,
            "data.mmc4_filter.threshold": 0.2,
            "train.steps": steps,
            "train.log_every": 1,  # gates too, every step: the most logging a run can do
            "train.checkpoint_every": 0,
        }
    )


def run_once(spec: RunSpec, home: Path, mode: str) -> tuple[float, float, float, int]:
    """(loop wall s, median step s, process CPU s, metrics per step) of one run in ``mode``; the
    CPU time (every thread) covers the whole run, model building and MLflow start-up too."""
    design = track.Tracker
    track.Tracker = MlflowAsyncTracker if mode == "mlflow-async" else design  # type: ignore[misc]
    cpu = time.process_time()
    try:
        result = train(spec, home=home, track=mode != "untracked", show_progress=False)
    finally:
        track.Tracker = design  # type: ignore[misc]
    cpu = time.process_time() - cpu
    if mode != "untracked":  # every metric of every step reached the store
        logged = track.metric_history(track.default_uri(home), result.run_id, "loss")
        assert len(logged) == spec.train.steps, (mode, len(logged))
    step_s = statistics.median(result.curve("time/step_s"))
    return result.final["final/wall_s"], step_s, cpu, len(result.history[-1]) - 1  # no "skipped"


def logging_only(root: Path, steps: int, per_step: int) -> dict[str, tuple[float, float, float]]:
    """Each design without training: ``steps`` calls of ``per_step`` metrics, then a flush, as
    (s in log_metrics calls, s until all are durable, process CPU s) by design."""
    out = {}
    designs = [("own-thread", track.Tracker), ("mlflow-async", MlflowAsyncTracker),
               ("mlflow-async-buffered", MlflowAsyncTracker)]  # fmt: skip
    for mode, design in designs:
        # MLflow merges what is queued in this many seconds into one log_batch (default: none)
        os.environ.pop("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", None)
        if "buffered" in mode:
            os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = "2"
        home = root / f"logging-only-{mode}"
        tracker = design(track.default_uri(home), "bench", run_name="logging-only", params={},
                         tags={}, home=home, system_metrics_every_s=0)  # fmt: skip
        metrics = {f"metric/{i}": float(i) for i in range(per_step)}
        calls, start, cpu = 0.0, time.perf_counter(), time.process_time()
        for step in range(1, steps + 1):
            before = time.perf_counter()
            tracker.log_metrics(metrics, step)
            calls += time.perf_counter() - before
        tracker.flush()
        out[mode] = (calls, time.perf_counter() - start, time.process_time() - cpu)
        tracker.finish()
        os.environ.pop("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="0: the logging-only part alone")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    root = Path(tempfile.mkdtemp(prefix="wb-track-bench-"))
    if args.repeats:
        training(root, args.steps, args.repeats)
    n, per_step = 20 * args.steps, 21  # what a run logs per step with train.log_every 1
    for mode, (calls, durable, cpu) in logging_only(root, n, per_step).items():
        print(
            f"{mode:>21}  logging only, {n} steps x {per_step}: {calls * 1e6 / n:6.1f} us per"
            f" log_metrics call, all durable after {durable:5.2f} s, cpu {cpu:5.2f} s"
        )


def training(root: Path, steps: int, repeats: int) -> None:
    """Prints the tiny run's loop wall time by mode (medians), and its ratio to untracked."""
    spec = bench_spec(root, steps)
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    step_s: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES[repeat % 3 :] + MODES[: repeat % 3]:  # each mode first once in three
            wall, step, cpu, per_step = run_once(spec, root / f"home-{repeat}-{mode}", mode)
            walls[mode].append(wall)
            step_s[mode].append(step)
            cpus[mode].append(cpu)
    off = statistics.median(walls["untracked"])
    print(f"{steps} steps, {per_step} metrics per step, {repeats} repeats (medians)")
    for mode in MODES:
        wall = statistics.median(walls[mode])
        print(
            f"{mode:>21}  loop {wall:6.2f} s  step {statistics.median(step_s[mode]) * 1e3:6.1f} ms"
            f"  cpu {statistics.median(cpus[mode]):6.1f} s  ratio to untracked {wall / off:.3f}"
            f"  overhead {100 * (wall / off - 1):+5.1f}%"
        )
    ratio = statistics.median(walls["mlflow-async"]) / statistics.median(walls["own-thread"])
    print(f"{'mlflow-async / own-thread':>21}  loop {ratio:.3f}")


if __name__ == "__main__":
    main()
