"""``train(spec) -> RunResult``: one real training run, end to end.

The recipe is the reference's (REFERENCE.md): AdamW over the trainable parameters, weight decay
on cross-attention only, warmup then the schedule, gradient accumulation counted in optimizer
steps, clipping at ``clip_norm`` after accumulation, each source's loss scaled by the mixture's
multiplier.

Two choices differ from the reference, both so that a run's numbers depend on its spec and seed
and not on how many processes run it:

- Batch sizes in the mixture are global. Every rank reads the same streams and keeps its rows
  (``r::world``) of each batch, so a run on 2 processes sees exactly the data of a run on one.
  (Each rank decodes the whole batch; at the shapes world's sizes that costs nothing.)
- A part's loss is its token-summed cross-entropy divided by the labelled-token count of the
  whole global batch (which every rank holds), not a mean of per-rank means.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.data.batch import IGNORE_INDEX, Batch, TokenIds
from workbench.data.filters import MMC4_FILTERS
from workbench.data.laion import LaionSource
from workbench.data.loader import MixtureDataset, Source, Step, StreamTracker, make_loader
from workbench.data.mmc4 import MMC4Source
from workbench.data.stream import expand_shards
from workbench.model.factory import create_model_and_transforms
from workbench.model.flamingo import Flamingo
from workbench.model.lm import FlamingoDecoderLayer
from workbench.spec import RunSpec, SpecError
from workbench.train import checkpoint, parallel
from workbench.train.optim import build_optimizer
from workbench.train.parallel import Dist

SOURCES = ("laion", "mmc4", "mixed")


class Stopped(Exception):
    """Raised by an ``on_eval`` callback to end a run early (e.g. a pruned search trial); the
    training loop adds the stopped run's MLflow id."""

    run_id: str | None = None


@dataclass
class RunResult:
    """What a run produced. ``history`` has one entry per optimizer step (from step 1)."""

    run_id: str | None
    run_dir: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # in-process runs

    def curve(self, key: str = "loss") -> list[float]:
        """One metric by step (NaN where a step lacks it)."""
        return [entry.get(key, math.nan) for entry in self.history]

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        data["run_dir"] = str(self.run_dir)
        data["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        data = json.loads(text)
        data["run_dir"] = Path(data["run_dir"])
        data["checkpoint"] = Path(data["checkpoint"]) if data["checkpoint"] else None
        return cls(**data)


def home_dir(home: str | Path | None = None) -> Path:
    """``home``, else ``$WB_HOME``, else ``./wb-runs``."""
    return Path(home or os.environ.get("WB_HOME") or "wb-runs")


def run_dir(spec: RunSpec, home: str | Path | None = None) -> Path:
    """Where a run keeps its spec, checkpoints and result: one directory per config and seed."""
    return home_dir(home) / "runs" / f"{spec.name}-{spec.config_id}-seed{spec.train.seed}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train(
    spec: RunSpec,
    *,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    resume: bool = False,
    track: bool = True,
    device: str | None = None,
    show_progress: bool = True,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> RunResult:
    """Trains ``spec`` in this process (one rank of a torchrun job under ``ddp``/``fsdp``).

    Args:
        home: the working directory (runs, MLflow store); default ``$WB_HOME`` or ``./wb-runs``.
        tracking_uri: an MLflow URI; default ``sqlite:///<home>/mlflow.db``.
        experiment: the MLflow experiment; default ``spec.name``.
        tags: extra run tags (a study's axis values, ``axis.<name>``).
        resume: continue from the run's latest checkpoint, in the same MLflow run. Without it a
            run directory that already holds checkpoints is an error (nothing is overwritten).
        track: log to MLflow (off for benchmarks).
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        on_eval: called with (step, eval metrics) after each periodic evaluation; raising
            :class:`Stopped` ends the run there (a search pruning a trial), its MLflow run
            marked KILLED.
    """
    _check(spec)
    where = parallel.init(spec.train.strategy, device)
    try:
        run = _Run(spec, where, home_dir(home), tracking_uri, experiment, tags or {})
        run.on_eval = on_eval
        return run.train(resume=resume, track=track, show_progress=show_progress)
    finally:
        parallel.shutdown(where)


def run(
    spec: RunSpec,
    *,
    nproc_per_node: int = 1,
    nnodes: int = 1,
    node_rank: int | None = None,
    rdzv_endpoint: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    resume: bool = False,
    track: bool = True,
    show_progress: bool = True,
) -> RunResult | None:
    """Runs ``spec`` here (one process) or as a torchrun job of ``nnodes`` x ``nproc_per_node``
    processes; the result comes back on the machine of rank 0 (None on the others).

    The MLflow store and experiment are created before any worker starts.
    """
    from workbench import track as tracking

    _check(spec)
    home = home_dir(home)
    uri = tracking_uri or tracking.default_uri(home)
    if track:  # before any worker starts (and before anything slow: an unreachable store fails)
        tracking.prepare(uri, experiment or spec.name, home)
    if nproc_per_node == 1 and nnodes == 1:
        return train(
            spec,
            home=home,
            tracking_uri=tracking_uri,
            experiment=experiment,
            tags=tags,
            resume=resume,
            track=track,
            show_progress=show_progress,
        )
    if spec.train.strategy == "single":
        raise SpecError("several processes need train.strategy 'ddp' or 'fsdp', not 'single'")
    where = run_dir(spec, home)
    where.mkdir(parents=True, exist_ok=True)
    spec_file = where / "launch-spec.json"
    spec_file.write_text(spec.to_json())
    (where / "result.json").unlink(missing_ok=True)
    args = [str(spec_file), "--home", str(home), "--tracking-uri", uri]
    args += ["--experiment", experiment or spec.name]
    args += [f"--tag={k}={v}" for k, v in (tags or {}).items()]
    args += ["--resume"] * resume + ["--no-track"] * (not track)
    args += ["--no-progress"] * (not show_progress)
    code = parallel.launch(
        args,
        nproc_per_node=nproc_per_node,
        nnodes=nnodes,
        node_rank=node_rank,
        rdzv_endpoint=rdzv_endpoint,
    )
    if code != 0:
        raise RuntimeError(
            f"the training job failed (torchrun exit code {code}); see its log above"
        )
    result = where / "result.json"
    return RunResult.from_json(result.read_text()) if result.exists() else None


def build_model(spec: RunSpec) -> tuple[Flamingo, Any, Any]:
    """(model, image processor, tokenizer) as ``spec.model`` describes them."""
    m = spec.model
    return create_model_and_transforms(
        m.vision,
        m.lm,
        vision_pretrained=m.vision_pretrained,
        tokenizer=m.tokenizer,
        xattn_every=m.xattn_every,
        only_attend_immediate=m.only_attend_immediate,
        special_embeddings=m.special_embeddings,
        xattn_heads=m.xattn_heads,
        xattn_dim_head=m.xattn_dim_head,
        xattn_ff_mult=m.xattn_ff_mult,
        resampler=m.resampler,
        resampler_options=m.resampler_options,
    )


def _check(spec: RunSpec) -> None:
    if not spec.model.lm:
        raise SpecError("model.lm is required: a Hugging Face id or a local LM directory")
    if spec.train.steps < 1 or spec.train.grad_accum < 1:
        raise SpecError("train.steps and train.grad_accum must be at least 1")
    if spec.train.checkpoint_every < 0 or spec.train.keep_checkpoints < 1:
        raise SpecError("train.checkpoint_every must be >= 0 and train.keep_checkpoints >= 1")
    if spec.eval.every < 0:
        raise SpecError("eval.every must be >= 0")
    if spec.eval.every:
        from workbench.eval.tasks import TASKS

        if not spec.eval.tasks or not spec.eval.data:
            raise SpecError("eval.every > 0 needs eval.tasks and eval.data (an eval directory)")
        unknown = [t for t in spec.eval.tasks if t not in TASKS]
        if unknown:
            raise SpecError(f"eval.tasks: unknown {unknown}; valid: {TASKS.names()}")
        if not Path(spec.eval.data).is_dir():
            raise SpecError(f"eval.data: {spec.eval.data} is not a directory")
    d = spec.data
    shards = {"laion": d.laion_shards, "mmc4": d.mmc4_shards}
    missing = [s for s in d.mixture.options.sources if not shards[s]]
    if missing:
        keys = " and ".join(f"data.{s}_shards" for s in missing)
        raise SpecError(f"mixture {d.mixture.name!r} reads {missing}: set {keys} (brace patterns)")
    for source in d.mixture.options.sources:
        absent = [p for p in expand_shards(shards[source]) if not Path(p).exists()]
        if absent:
            raise SpecError(
                f"data.{source}_shards: {len(absent)} shards do not exist, e.g. {absent[0]}"
            )


class _Run:
    def __init__(
        self,
        spec: RunSpec,
        where: Dist,
        home: Path,
        tracking_uri: str | None,
        experiment: str | None,
        tags: Mapping[str, Any],
    ) -> None:
        self.spec, self.where, self.home = spec, where, home
        self.dir = run_dir(spec, home)
        self.tracking_uri = tracking_uri
        self.experiment = experiment or spec.name
        self.tags = dict(tags)
        self.schedule = spec.train.schedule.options
        self.on_eval: Callable[[int, dict[str, float]], None] | None = None

    # --- set-up ---------------------------------------------------------------------------

    def _model(self) -> tuple[Flamingo, Any, Any]:
        torch.manual_seed(self.spec.train.seed)  # the same initial weights on every rank
        return build_model(self.spec)

    def _data(self, tokenizer: Any, processor: Any, resume: StreamTracker | None) -> Iterator[Step]:
        d = self.spec.data
        mixture = d.mixture.options
        _check_batch_sizes(mixture, self.where.world_size)
        sources: dict[str, Source] = {
            "laion": LaionSource(tokenizer, processor, d.laion),
            "mmc4": MMC4Source(
                tokenizer,
                processor,
                d.mmc4,
                MMC4_FILTERS.get(d.mmc4_filter.name)(**asdict(d.mmc4_filter.options)),
            ),
        }
        shards = {
            name: expand_shards(pattern) if pattern else []
            for name, pattern in (("laion", d.laion_shards), ("mmc4", d.mmc4_shards))
        }
        dataset = MixtureDataset(
            mixture,
            {name: sources[name] for name in mixture.sources},
            shards,
            TokenIds.from_tokenizer(tokenizer),
            seed=self.spec.train.seed,
            shuffle_buffer=d.shuffle_buffer,
            resume=resume,
        )
        return iter(make_loader(dataset, d.workers))

    # --- the run ----------------------------------------------------------------------------

    def train(self, *, resume: bool, track: bool, show_progress: bool) -> RunResult:
        spec, where = self.spec, self.where
        latest = checkpoint.latest(self.dir)
        if latest is not None and not resume:
            raise FileExistsError(
                f"{self.dir} already holds checkpoints (latest {latest.name}): resume it, or "
                "change the run's name or seed"
            )
        if where.is_main:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "spec.json").write_text(spec.to_json())

        model, processor, tokenizer = self._model()
        if spec.train.activation_checkpointing:
            for module in model.modules():
                if isinstance(module, FlamingoDecoderLayer):
                    module.checkpointing = True
        core = model
        wrapped = parallel.wrap(
            model,
            where,
            precision=spec.train.precision,
            unit_types=(FlamingoDecoderLayer,),
            units=[model.resampler, model.vision],
        )
        optimizer = build_optimizer(wrapped, spec.train.lr, spec.train.weight_decay)
        trainable = [p for p in wrapped.parameters() if p.requires_grad]

        state: dict[str, Any] = {"step": 0, "history": [], "run_id": None, "stream": None}
        if resume and latest is not None:
            state = checkpoint.load(latest, wrapped, optimizer, where)
        stream = (
            StreamTracker.from_state_dict(state["stream"])
            if state["stream"]
            else StreamTracker(max(spec.data.workers, 1))
        )
        steps = self._data(tokenizer, processor, stream if state["stream"] else None)
        tracker = self._tracker(track, state["run_id"], latest)
        history: list[dict[str, float]] = state["history"]
        gates = _gate_params(core)
        autocast = (
            torch.autocast(where.device.type, dtype=torch.bfloat16)
            if spec.train.precision == "bf16" and where.strategy != "fsdp"
            else nullcontext()
        )
        evaluator = _Evaluator(spec, wrapped, tokenizer, processor, where)
        if state["step"] == 0 and evaluator.enabled:
            tracker.log_metrics(evaluator(), 0)
        progress = _Progress(spec.train.steps, state["step"], show_progress and where.is_main)
        start = time.perf_counter()
        saved: Path | None = latest
        status = "FAILED"
        try:
            for step in range(state["step"], spec.train.steps):
                metrics = self._step(wrapped, optimizer, trainable, steps, stream, step, autocast)
                if (step + 1) % spec.train.log_every == 0 or step + 1 == spec.train.steps:
                    values = parallel.first_values(gates, where)
                    for (name, _), value in zip(_gate_names(core), values, strict=True):
                        metrics[name] = math.tanh(value)
                metrics.update(_data_metrics(stream))
                metrics["nonfinite_steps"] = (
                    sum(1 for h in history if h.get("skipped")) + metrics["skipped"]
                )
                if evaluator.enabled and (
                    (step + 1) % spec.eval.every == 0 or step + 1 == spec.train.steps
                ):
                    metrics.update(evaluator())
                history.append(metrics)
                tracker.log_metrics({k: v for k, v in metrics.items() if k != "skipped"}, step + 1)
                if self.on_eval is not None and any(k.startswith("eval/") for k in metrics):
                    try:
                        self.on_eval(
                            step + 1, {k: v for k, v in metrics.items() if k.startswith("eval/")}
                        )
                    except Stopped as stop:
                        tracker.set_tags({"stopped": str(stop)})
                        stop.run_id = tracker.run_id
                        status = "KILLED"
                        raise
                progress.update(step + 1, metrics)
                every = spec.train.checkpoint_every
                if (every and (step + 1) % every == 0) or step + 1 == spec.train.steps:
                    saved = checkpoint.step_dir(self.dir, step + 1)
                    tracker.flush()  # every metric up to a checkpoint survives a crash after it
                    checkpoint.save(
                        saved,
                        wrapped,
                        optimizer,
                        {
                            "step": step + 1,
                            "history": history,
                            "run_id": tracker.run_id,
                            "stream": stream.state_dict(),
                            "spec": spec.to_json(),
                        },
                        where,
                        spec.train.keep_checkpoints,
                    )
                    tracker.set_tags({"checkpoint": str(saved.resolve())})
            status = "FINISHED"
        finally:
            progress.close()
            if status in ("FAILED", "KILLED"):
                tracker.finish(status)
        result = RunResult(tracker.run_id, self.dir, spec.train.steps, history, {}, saved, core)
        result.final = _final(history, time.perf_counter() - start)
        tracker.log_metrics(result.final, spec.train.steps)
        tracker.finish("FINISHED")
        if where.is_main:
            (self.dir / "result.json").write_text(result.to_json())
            print(_summary(spec, result), flush=True)
        return result

    def _tracker(self, track: bool, run_id: str | None, latest: Path | None) -> Any:
        from workbench import track as tracking

        if not (track and self.where.is_main):
            return tracking.NullTracker()
        tags = {
            "config_id": self.spec.config_id,
            "seed": self.spec.train.seed,
            "git_commit": git_commit(),
            "run_dir": str(self.dir.resolve()),
            **self.tags,
        }
        tracker = tracking.Tracker(
            self.tracking_uri or tracking.default_uri(self.home),
            self.experiment,
            run_name=f"{self.spec.name}-{self.spec.config_id}-seed{self.spec.train.seed}",
            params=self.spec.flatten(),
            tags=tags,
            run_id=run_id,
            home=self.home,
        )
        if run_id is None:
            tracker.log_text(self.spec.to_json(), "spec.json")
        else:
            tracker.set_tags({"resumed_from": str(latest)})
        return tracker

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        trainable: list[nn.Parameter],
        steps: Iterator[Step],
        stream: StreamTracker,
        step: int,
        autocast: Any,
    ) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; its metrics."""
        spec, where = self.spec, self.where
        accum = spec.train.grad_accum
        began = time.perf_counter()
        # per source: loss sum, labelled tokens, tokens, samples; then the objective
        totals = torch.zeros(4 * len(SOURCES) + 1, dtype=torch.float64)
        losses: list[tuple[int, float, torch.Tensor]] = []  # read once after the loop: no
        for micro in range(accum):  # device sync between micro-batches
            data = next(steps)
            stream.update(data)
            if not data.parts:
                raise RuntimeError("the data stream ended (a one-pass source ran out)")
            # every rank holds the whole global batch, so these are global counts already
            counts = [float((p.batch.labels[:, 1:] != IGNORE_INDEX).sum()) for p in data.parts]
            for i, part in enumerate(data.parts):
                rows = _rows(part.batch, where.rank, where.world_size)  # on the CPU
                k = SOURCES.index(part.name)
                totals[4 * k + 1] += float((rows.labels[:, 1:] != IGNORE_INDEX).sum())
                totals[4 * k + 2] += float(rows.attention_mask.sum())
                totals[4 * k + 3] += len(rows)
                batch = rows.to(where.device)
                last = micro == accum - 1 and i == len(data.parts) - 1
                with parallel.gradient_sync(model, last), autocast:
                    logits = model(
                        batch.images, batch.image_mask, batch.input_ids, batch.attention_mask
                    ).logits
                    loss_sum = _token_loss_sum(logits, batch.labels)
                    scale = part.loss_multiplier / (max(counts[i], 1.0) * accum)
                    (loss_sum * scale * where.world_size).backward()
                losses.append((k, scale, loss_sum.detach()))
        values = torch.stack([loss for _, _, loss in losses]).double().cpu()
        for (k, scale, _), value in zip(losses, values.tolist(), strict=True):
            totals[4 * k] += value
            totals[-1] += value * scale
        parallel.all_reduce_sum(totals, where)
        lr = spec.train.lr * self.schedule(step, spec.train.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        objective = float(totals[-1])
        grad_norm = math.nan
        if math.isfinite(objective):
            grad_norm = parallel.clip_grad_norm(trainable, spec.train.clip_norm)
        skipped = not (math.isfinite(objective) and math.isfinite(grad_norm))
        if not skipped:  # every rank sees the same reduced values, so all skip together
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - began
        metrics = {"loss": objective, "lr": lr, "grad_norm": grad_norm, "skipped": float(skipped)}
        tokens = samples = 0.0
        for k, name in enumerate(SOURCES):
            if totals[4 * k + 3] > 0:
                metrics[f"loss/{name}"] = float(totals[4 * k] / max(float(totals[4 * k + 1]), 1))
                tokens += float(totals[4 * k + 2])
                samples += float(totals[4 * k + 3])
        metrics["throughput/tokens_per_s"] = tokens / seconds
        metrics["throughput/samples_per_s"] = samples / seconds
        metrics["time/step_s"] = seconds
        return metrics


def _check_batch_sizes(mixture: Any, world_size: int) -> None:
    if not is_dataclass(mixture):
        return
    for f in fields(mixture):
        size = getattr(mixture, f.name)
        if f.name.endswith("batch_size") and isinstance(size, int) and size < world_size:
            raise SpecError(
                f"data.mixture.{f.name}={size} is smaller than the {world_size} processes: "
                "batch sizes are global, so each process needs at least one row"
            )


def _rows(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's rows (``rank::world``) of a global batch."""
    if world == 1:
        return batch
    pick = slice(rank, None, world)
    return Batch(
        batch.images[pick],
        batch.image_mask[pick],
        batch.input_ids[pick],
        batch.attention_mask[pick],
        batch.labels[pick],
        batch.source[pick],
        batch.keys[pick],
    )


def _token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (fp32)."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def _gate_names(model: Flamingo) -> list[tuple[str, nn.Parameter]]:
    out = []
    for layer, block in sorted(model.xattn_blocks().items()):
        out.append((f"gate/attn/{layer}", block.attn_gate))
        out.append((f"gate/ff/{layer}", block.ff_gate))
    return out


def _gate_params(model: Flamingo) -> list[torch.Tensor]:
    return [param for _, param in _gate_names(model)]


def _data_metrics(stream: StreamTracker) -> dict[str, float]:
    metrics: dict[str, float] = {}
    total = stream.counts.get("laion", 0) + stream.counts.get("mmc4", 0)
    if total:
        metrics["data/realised_mmc4_fraction"] = stream.counts.get("mmc4", 0) / total
    for key, count in stream.skipped.items():
        metrics[f"data/skipped/{key}"] = float(count)
    return metrics


def _final(history: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """Summary metrics: the mean of each loss over the last tenth of the steps (at least one)."""
    tail = history[-max(len(history) // 10, 1) :]
    final: dict[str, float] = {}
    for key in sorted({k for h in tail for k in h if k.startswith("loss")}):
        values = [h[key] for h in tail if key in h and math.isfinite(h[key])]
        if values:
            final[f"final/{key}"] = sum(values) / len(values)
    if history:
        final["final/nonfinite_steps"] = history[-1].get("nonfinite_steps", 0.0)
        throughput = [h["throughput/tokens_per_s"] for h in tail]
        final["final/tokens_per_s"] = sum(throughput) / len(throughput)
    final["final/wall_s"] = seconds
    return final


def _summary(spec: RunSpec, result: RunResult) -> str:
    first = result.history[0] if result.history else {}
    parts = [f"{spec.name} [{spec.config_id} seed {spec.train.seed}] {result.steps} steps"]
    for key in ("loss", "loss/laion", "loss/mmc4", "loss/mixed"):
        if key in first and f"final/{key}" in result.final:
            parts.append(f"{key} {first[key]:.3f} -> {result.final[f'final/{key}']:.3f}")
    parts.append(f"{result.final.get('final/tokens_per_s', 0):,.0f} tok/s")
    parts.append(f"run {result.run_id}" if result.run_id else "untracked")
    return " | ".join(parts)


class _Evaluator:
    """Few-shot evaluation during training: ``eval/<task>/<shots>shot`` (on every rank)."""

    def __init__(self, spec: RunSpec, model: nn.Module, tokenizer: Any, processor: Any,
                 where: Dist) -> None:  # fmt: skip
        self.spec, self.model, self.tokenizer = spec.eval, model, tokenizer
        self.processor, self.where = processor, where
        self.enabled = spec.eval.every > 0
        self.datasets: dict[str, Any] = {}
        if self.enabled:
            from workbench.eval.tasks import load_task

            self.datasets = {t: load_task(t, spec.eval.data) for t in spec.eval.tasks}

    def __call__(self) -> dict[str, float]:
        from workbench.eval.fewshot import evaluate

        metrics = {}
        for name, dataset in self.datasets.items():
            for shots in self.spec.shots:
                result = evaluate(
                    self.model, self.tokenizer, self.processor, dataset, shots,
                    trials=self.spec.trials, demos=self.spec.demos,
                    query_size=self.spec.query_size, subset=self.spec.subset,
                    batch_size=self.spec.batch_size, where=self.where,
                )  # fmt: skip
                metrics[f"eval/{name}/{shots}shot"] = result.mean
        return metrics


class _Progress:
    """A rich progress bar on rank 0: step, losses, tokens/s and ETA."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.bar.add_task("train", total=total, completed=done, losses="")
        self.bar.start()

    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.bar is None:
            return
        losses = " ".join(
            f"{k.removeprefix('loss/')} {v:.3f}"
            for k, v in metrics.items()
            if k.startswith("loss/") and math.isfinite(v)
        )
        tokens = metrics.get("throughput/tokens_per_s", 0.0)
        self.bar.update(self.task, completed=step, losses=f"{losses} | {tokens:,.0f} tok/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
