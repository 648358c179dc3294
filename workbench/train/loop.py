"""``train(spec) -> RunResult``: one real training run in this process (one rank of a job).

The recipe is OpenFlamingo's: AdamW over the trainable parameters, weight decay on
cross-attention only, warmup then the schedule, gradient accumulation counted in optimizer steps,
clipping after accumulation, each source's loss scaled by the mixture's multiplier. Two choices
differ, so that a run's numbers depend on its spec and seed, not on its number of processes:
batch sizes are global (every rank reads the same streams and keeps its rows ``r::world``), and
a part's loss is its token-summed cross-entropy over the labelled tokens of the global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench import track
from workbench.data.batch import IGNORE_INDEX
from workbench.data.loader import Step, StreamTracker
from workbench.data.pipeline import PART_NAMES, build_steps, data_metrics, stream_table
from workbench.eval.group import Group
from workbench.eval.run import Evaluator
from workbench.model.features import FeatureCache, fingerprint
from workbench.model.flamingo import token_loss_sum
from workbench.spec import RunSpec
from workbench.train import checkpoint, dist, metrics
from workbench.train.build import build_model, check_spec, open_tracker
from workbench.train.dist import Dist
from workbench.train.flops import FlopCounter, accumulate, step_compute
from workbench.train.optim import build_optimizer
from workbench.train.parallelize import parallelize
from workbench.train.result import RunOptions, RunResult, Stopped, home_dir, run_dir


def train(spec: RunSpec, options: RunOptions | None = None, **changes: Any) -> RunResult:
    """Trains ``spec`` here: one process, or one rank of a multi-process job under ``ddp``/``fsdp``.

    Args:
        options: how the run is carried out and tracked; ``changes`` replace its fields
            (``train(spec, home=tmp, show_progress=False)``).
    """
    options = dataclasses.replace(options or RunOptions(), **changes)
    where = dist.init(spec.train.strategy, options.device)
    try:
        check_spec(spec, where.world_size)
        return _Run(spec, where, options).train()
    finally:
        dist.shutdown(where)


@dataclass
class _Parts:
    """What the step loop works on."""

    model: nn.Module  # wrapped for the strategy
    core: Any  # the Flamingo module itself
    optimizer: torch.optim.Optimizer
    trainable: list[nn.Parameter]
    steps: Iterator[Step]
    stream: StreamTracker
    tracker: Any
    evaluator: Evaluator
    history: list[dict[str, float]]
    flops: FlopCounter


class _Run:
    def __init__(self, spec: RunSpec, where: Dist, options: RunOptions) -> None:
        self.spec, self.where, self.options = spec, where, options
        self.home = home_dir(options.home)
        self.dir = run_dir(spec, self.home)
        self.schedule = spec.train.schedule.options
        self.autocast: AbstractContextManager[Any] = (
            torch.autocast(where.device.type, dtype=torch.bfloat16)
            if spec.train.precision == "bf16" and where.strategy != "fsdp"
            else nullcontext()
        )

    def train(self) -> RunResult:
        latest = checkpoint.latest(self.dir)
        if latest is not None and not self.options.resume:
            raise FileExistsError(
                f"{self.dir} already holds checkpoints (latest {latest.name}): resume it, or "
                "change the run's name or seed"
            )
        if self.where.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "spec.json").write_text(self.spec.to_json())
        parts, start_step, latest = self._set_up(latest)
        try:
            result = self._train(parts, start_step, latest)
        except Stopped:  # a search pruned the trial
            with contextlib.suppress(Exception):  # the error that ended the run is the news
                parts.tracker.finish("KILLED")
            raise
        except BaseException:  # any error, Ctrl-C included: never left RUNNING
            with contextlib.suppress(Exception):
                parts.tracker.finish("FAILED")
            raise
        parts.tracker.finish("FINISHED")
        if self.where.is_main:
            (self.dir / "result.json").write_text(result.to_json())
            print(metrics.summary(self.spec, result), flush=True)
        return result

    def _train(self, parts: _Parts, start_step: int, latest: Path | None) -> RunResult:
        if start_step == 0 and parts.evaluator.enabled and self.spec.eval.at_start:
            parts.tracker.log_metrics(_evaluate(parts, 0), 0)
        started = time.perf_counter()
        saved = self._loop(parts, start_step, latest)
        if parts.core.vision.cache is not None:
            parts.core.vision.cache.flush()
        result = RunResult(parts.tracker.run_id, self.dir, self.spec.train.steps, parts.history,
                           {}, saved, parts.core)  # fmt: skip
        result.final = metrics.final_metrics(parts.history, time.perf_counter() - started)
        parts.tracker.log_metrics(result.final, self.spec.train.steps)
        return result

    def _set_up(self, latest: Path | None) -> tuple[_Parts, int, Path | None]:
        """The parts, the step to start from and the checkpoint resumed (the newest intact)."""
        spec, where = self.spec, self.where
        core, processor, tokenizer = build_model(spec)
        if spec.train.feature_cache and where.strategy != "fsdp":  # FSDP: every rank encodes
            folder = self.home / "features" / fingerprint(core.vision)
            core.vision.cache = FeatureCache(folder)
        model = parallelize(core, where, spec.train)
        optimizer = build_optimizer(model, spec.train.lr, spec.train.weight_decay)
        state: dict[str, Any] = {"step": 0, "history": [], "run_id": None, "stream": None}
        resuming = self.options.resume and latest is not None
        restored, latest, skipped = (checkpoint.resume(self.dir, model, optimizer, where)
                                     if resuming else (None, latest, []))  # fmt: skip
        state = restored or state
        resumed = StreamTracker.from_state_dict(state["stream"]) if state["stream"] else None
        stream = resumed or StreamTracker(max(spec.data.workers, 1))
        steps = build_steps(spec.data, tokenizer, processor, seed=spec.train.seed, resume=resumed)
        group = Group(where.rank, where.world_size,
                      functools.partial(dist.gather_objects, where=where),
                      synced=where.strategy == "fsdp" and where.world_size > 1)  # fmt: skip
        evaluator = Evaluator(spec.eval, model, tokenizer, processor, group, self.dir / "eval",
                              spec.data)  # fmt: skip
        tracker = (  # last: whatever fails after it marks the run FAILED (train)
            open_tracker(spec, self.home, self.options, state["run_id"], latest)
            if where.is_main
            else track.NullTracker()
        )
        if skipped:
            tracker.set_tags({"resume_fallback": " | ".join(skipped)[:5000]})
        trainable = [p for p in model.parameters() if p.requires_grad]
        parts = _Parts(model, core, optimizer, trainable, steps, stream, tracker, evaluator,
                       state["history"], FlopCounter.of(core))  # fmt: skip
        return parts, int(state["step"]), latest

    def _loop(self, parts: _Parts, start: int, latest: Path | None) -> Path | None:
        """Steps ``start`` .. ``train.steps``; the last checkpoint written (or ``latest``)."""
        spec = self.spec
        progress = metrics.Progress(spec.train.steps, start,
                                    self.options.show_progress and self.where.is_main)  # fmt: skip
        saved = latest
        try:
            for step in range(start + 1, spec.train.steps + 1):
                values = self._logged_step(parts, step)
                self._report_eval(parts, step, values)
                progress.update(step, values)
                if self.options.on_step is not None:
                    self.options.on_step(step, values)
                every = spec.train.checkpoint_every
                if (every and step % every == 0) or step == spec.train.steps:
                    saved = self._save(parts, step)
        finally:
            progress.close()
        return saved

    def _logged_step(self, parts: _Parts, step: int) -> dict[str, float]:
        """Optimizer step ``step`` (from 1) with its gates, data counts and evaluation, logged."""
        values = self._step(parts, step - 1)
        if step % self.spec.train.log_every == 0 or step == self.spec.train.steps:
            names = metrics.gates(parts.core)
            read = dist.first_values([p for _, p in names], self.where)
            values.update({name: math.tanh(v) for (name, _), v in zip(names, read, strict=True)})
        values.update(data_metrics(parts.stream))
        if parts.core.vision.cache is not None:
            values["features/hit_rate"] = parts.core.vision.cache.hit_rate
        values["nonfinite_steps"] = (
            sum(1 for h in parts.history if h.get("skipped")) + values["skipped"]
        )
        if parts.evaluator.due(step, self.spec.train.steps):
            values.update(_evaluate(parts, step))
        if step == self.spec.train.steps and self.where.is_main:  # what the run trained on
            stream_table(parts.stream).write_parquet(self.dir / "stream_mmc4.parquet")
            parts.tracker.log_artifacts([self.dir / "stream_mmc4.parquet"], "stream")
        parts.history.append(values)
        parts.tracker.log_metrics({k: v for k, v in values.items() if k != "skipped"}, step)
        return values

    def _report_eval(self, parts: _Parts, step: int, values: dict[str, float]) -> None:
        """Hands the step's eval metrics to ``on_eval``, which may stop the run."""
        on_eval = self.options.on_eval
        evals = {k: v for k, v in values.items() if k.startswith("eval/")}
        if on_eval is None or not evals:
            return
        try:
            on_eval(step, evals)
        except Stopped as stop:
            parts.tracker.set_tags({"stopped": str(stop)})
            stop.run_id = parts.tracker.run_id
            raise

    def _save(self, parts: _Parts, step: int) -> Path:
        path = checkpoint.step_dir(self.dir, step)
        if parts.core.vision.cache is not None:
            parts.core.vision.cache.flush()
        parts.tracker.flush()  # every metric up to a checkpoint survives a crash after it
        state = {"step": step, "history": parts.history, "run_id": parts.tracker.run_id,
                 "stream": parts.stream.state_dict(), "spec": self.spec.to_json()}  # fmt: skip
        checkpoint.save(path, parts.model, parts.optimizer, state, self.where,
                        self.spec.train.keep_checkpoints)  # fmt: skip
        parts.tracker.set_tags({"checkpoint": str(path.resolve())})
        return path

    def _step(self, parts: _Parts, step: int) -> dict[str, float]:
        """One optimizer step (from 0) over ``grad_accum`` micro-batches; its metrics."""
        spec, where = self.spec, self.where
        began = time.perf_counter()
        totals = metrics.new_totals()
        seen: list[Any] = []  # the parts of every micro-batch (what the step cost)
        losses: list[tuple[int, float, torch.Tensor]] = []  # read once after the loop: no
        for micro in range(spec.train.grad_accum):  # device sync between micro-batches
            data = next(parts.steps)
            parts.stream.update(data)
            if not data.parts:
                raise RuntimeError("the data stream ended (a one-pass source ran out)")
            seen += data.parts
            last = micro == spec.train.grad_accum - 1
            losses += self._backward(parts.model, data, totals, last)
        values = torch.stack([loss for _, _, loss in losses]).double().cpu()
        for (k, scale, _), value in zip(losses, values.tolist(), strict=True):
            totals[metrics.TOTALS_PER_PART * k] += value
            totals[-1] += value * scale
        dist.all_reduce_sum(totals, where)
        lr = spec.train.lr * self.schedule(step, spec.train.steps)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        objective = float(totals[-1])
        grad_norm = math.nan
        if math.isfinite(objective):
            grad_norm = dist.clip_grad_norm(parts.trainable, spec.train.clip_norm)
        skipped = not (math.isfinite(objective) and math.isfinite(grad_norm))
        if not skipped:  # every rank sees the same reduced values, so all skip together
            parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
        out = {"loss": objective, "lr": lr, "grad_norm": grad_norm, "skipped": float(skipped)}
        out |= metrics.step_metrics(totals, time.perf_counter() - began)
        out |= step_compute(parts.flops, seen)
        return out | accumulate(out, parts.history[-1] if parts.history else None)

    def _backward(
        self, model: nn.Module, data: Step, totals: torch.Tensor, last_micro: bool
    ) -> list[tuple[int, float, torch.Tensor]]:
        """Forward and backward of each part of one micro-batch (this rank's rows); adds its
        counts to ``totals``; returns (part index, loss scale, detached loss sum) per part."""
        where, accum = self.where, self.spec.train.grad_accum
        # every rank holds the whole global batch, so these are global counts already
        counts = [float((p.batch.labels[:, 1:] != IGNORE_INDEX).sum()) for p in data.parts]
        out = []
        for i, part in enumerate(data.parts):
            rows = part.batch.rows(where.rank, where.world_size)  # on the CPU
            k = PART_NAMES.index(part.name)
            base = metrics.TOTALS_PER_PART * k
            totals[base + 1] += float((rows.labels[:, 1:] != IGNORE_INDEX).sum())
            totals[base + 2] += float(rows.attention_mask.sum())
            totals[base + 3] += len(rows)
            batch = rows.to(where.device)
            sync = last_micro and i == len(data.parts) - 1
            with dist.gradient_sync(model, sync), self.autocast:
                logits = model(
                    batch.images, batch.image_mask, batch.input_ids, batch.attention_mask
                ).logits
                loss_sum = token_loss_sum(logits, batch.labels)
                scale = part.loss_multiplier / (max(counts[i], 1.0) * accum)
                (loss_sum * scale * where.world_size).backward()
            out.append((k, scale, loss_sum.detach()))
        return out


def _evaluate(parts: _Parts, step: int) -> dict[str, float]:
    """The evaluation's metrics at ``step``; its per-item results (parquet, written by rank 0
    into the run directory) become artifacts of the run, under ``eval/``."""
    values = parts.evaluator(step)
    parts.tracker.log_artifacts(parts.evaluator.item_files, "eval")
    return values
