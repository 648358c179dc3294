"""Steps of training data: a mixture over shard streams, inside dataloader workers.

Each worker builds whole steps (batches are per worker) and attaches to every step its stream
positions, its skip counters since its previous step and the per-source sample counts. The
consumer keeps the latest positions in a :class:`StreamTracker`; restoring from its state makes
each worker resume where it stopped, in the same round-robin order, so a resumed run sees the
same stream of steps as an uninterrupted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from workbench.data.batch import Example, TokenIds
from workbench.data.formats import BadRecord, Dropped
from workbench.data.mixture import Mixture, Part, SourceExhausted
from workbench.data.sources import SOURCES, Source
from workbench.data.stream import Position, ShardStream

#: Records of one source that its filters may drop in a row before the stream stops.
MAX_DROPPED_IN_A_ROW = 10_000


class DataError(RuntimeError):
    """A data stream that cannot give a valid record."""


@dataclass
class Step:
    parts: list[Part]
    counts: dict[str, int]  # samples per source in this step
    skipped: dict[str, int]  # records skipped by this worker since its previous step
    role: int  # which worker of the rank produced it (0..workers-1)
    state: dict[str, Any]  # the worker's stream state after this step


@dataclass
class StreamTracker:
    """Stream state of every worker of one rank, as of the last consumed step."""

    num_workers: int
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_role: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    # what the MMC4 rows consumed held: documents by their text tokens and by their images
    mmc4_tokens: Counter[int] = field(default_factory=Counter)
    mmc4_images: Counter[int] = field(default_factory=Counter)

    def update(self, step: Step) -> None:
        self.workers[step.role] = step.state
        self.next_role = (step.role + 1) % self.num_workers
        self.skipped.update(step.skipped)
        self.counts.update(step.counts)
        for part in step.parts:
            batch = part.batch
            rows = [i for i, source in enumerate(batch.source) if source == "mmc4"]
            if rows:
                self.mmc4_tokens.update(batch.attention_mask[rows].sum(dim=1).tolist())
                self.mmc4_images.update(batch.image_mask[rows].sum(dim=1).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "workers": {str(k): v for k, v in self.workers.items()},
            "next_role": self.next_role,
            "skipped": dict(self.skipped),
            "counts": dict(self.counts),
            "mmc4_tokens": {str(k): v for k, v in self.mmc4_tokens.items()},
            "mmc4_images": {str(k): v for k, v in self.mmc4_images.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> StreamTracker:
        return cls(
            num_workers=int(state["num_workers"]),
            workers={int(k): v for k, v in state["workers"].items()},
            next_role=int(state["next_role"]),
            skipped=Counter(state["skipped"]),
            counts=Counter(state["counts"]),
            mmc4_tokens=Counter({int(k): v for k, v in state.get("mmc4_tokens", {}).items()}),
            mmc4_images=Counter({int(k): v for k, v in state.get("mmc4_images", {}).items()}),
        )


class MixtureDataset(IterableDataset[Step]):
    """Infinite (resampled) or one-pass steps of a mixture over its sources' shards."""

    def __init__(
        self,
        mixture: Mixture,
        sources: dict[str, Source],
        shards: dict[str, list[str]],
        ids: TokenIds,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resampled: bool = True,
        shuffle_buffer: int = 0,
        resume: StreamTracker | None = None,
    ) -> None:
        unknown = [s for s in mixture.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"the mixture reads {unknown}; the sources are {list(SOURCES)}")
        missing = [s for s in mixture.sources if s not in sources or not shards.get(s)]
        if missing:
            raise ValueError(f"the mixture needs shards for {missing}")
        self.mixture, self.sources, self.shards, self.ids = mixture, sources, shards, ids
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.resampled, self.shuffle_buffer, self.resume = resampled, shuffle_buffer, resume

    def __iter__(self) -> Iterator[Step]:
        info = get_worker_info()
        local, workers = (info.id, info.num_workers) if info else (0, 1)
        resume = self.resume
        if resume is not None and resume.num_workers != workers:
            raise ValueError(
                f"resuming a stream saved with {resume.num_workers} dataloader workers with "
                f"{workers}; use the same number of workers"
            )
        role = (local + resume.next_role) % workers if resume else local
        state = resume.workers.get(role, {}) if resume else {}
        worker = self.rank * workers + role
        streams = {
            name: ShardStream(
                self.shards[name],
                seed=2 * self.seed + SOURCES[name].salt,
                worker=worker,
                num_workers=self.world_size * workers,
                resampled=self.resampled,
                shuffle_buffer=self.shuffle_buffer,
                position=Position(**state.get(name, {})),
            )
            for name in self.mixture.sources
        }
        reader = _Reader(streams, self.sources)
        steps = int(state.get("steps", 0))
        while True:
            reader.counts.clear()
            rng = np.random.default_rng([self.seed, worker, steps, 99])
            try:
                parts = self.mixture.step(reader.take, self.ids, rng)
            except SourceExhausted:
                if reader.skipped:  # a one-pass stream ends with the skips after its last step
                    yield Step([], {}, reader.pop_skipped(), role, reader.state(steps))
                return
            steps += 1
            yield Step(
                parts=parts,
                counts=dict(reader.counts),
                skipped=reader.pop_skipped(),
                role=role,
                state=reader.state(steps),
            )


class _Reader:
    """Pulls valid examples from the streams, counting what it skips."""

    def __init__(self, streams: dict[str, ShardStream], sources: dict[str, Source]) -> None:
        self.streams = streams
        self.sources = sources
        self.iterators = {name: iter(stream) for name, stream in streams.items()}
        self.positions = {name: stream.position for name, stream in streams.items()}
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.valid: Counter[str] = Counter()
        self.read: dict[str, set[str]] = {name: set() for name in streams}  # finished shards
        self.dropped_in_a_row: Counter[str] = Counter()

    def state(self, steps: int) -> dict[str, Any]:
        return {**{name: p.to_dict() for name, p in self.positions.items()}, "steps": steps}

    def pop_skipped(self) -> dict[str, int]:
        skipped, self.skipped = dict(self.skipped), Counter()
        return skipped

    def take(self, name: str) -> Example:
        stream = self.streams[name]
        for item, position in self.iterators[name]:
            for finished in range(self.positions[name].shard, position.shard):
                self.read[name].add(stream.shard_at(finished))  # type: ignore[arg-type]
            self.positions[name] = position
            try:
                if isinstance(item, BadRecord):
                    raise item
                example = self.sources[name].example(item, stream.record_rng(position))
            except BadRecord as bad:
                self.skipped[f"{name}/bad/{bad.reason}"] += 1
                self._check_not_all_bad(name)
                continue
            except Dropped as dropped:
                self.skipped[f"{name}/dropped/{dropped.reason}"] += 1
                self.dropped_in_a_row[name] += 1
                self._check_not_all_dropped(name)
                continue
            if example is None:
                continue
            self.dropped_in_a_row[name] = 0
            self.valid[name] += 1
            self.counts[name] += 1
            return example
        self._check_not_all_bad(name, exhausted=True)
        raise SourceExhausted(name)

    def _check_not_all_dropped(self, name: str) -> None:
        """A filter that drops :data:`MAX_DROPPED_IN_A_ROW` records of a source in a row stops the
        stream (an endless resampled stream would spin on forever)."""
        if self.dropped_in_a_row[name] < MAX_DROPPED_IN_A_ROW:
            return
        prefix = f"{name}/dropped/"
        reasons = {
            k.removeprefix(prefix): v for k, v in self.skipped.items() if k.startswith(prefix)
        }
        raise DataError(
            f"{name}: the filters dropped {self.dropped_in_a_row[name]:,} records in a row "
            f"({self.valid[name]:,} kept before; dropped by reason: {reasons}); loosen "
            f"data.{name}_filter or data.{name} (e.g. the similarity threshold)"
        )

    def _check_not_all_bad(self, name: str, exhausted: bool = False) -> None:
        """A source whose every shard was read without one valid record is an error, not a
        stream to spin on forever."""
        if self.valid[name]:
            return
        own = self.streams[name].own_shards()
        if exhausted and not own:
            return  # more workers than shards: this one simply has none
        if exhausted or self.read[name] >= set(own):
            counts = {k: v for k, v in self.skipped.items() if k.startswith(f"{name}/")}
            raise DataError(
                f"{name}: no valid record in shards {sorted(own)[:5]}"
                f"{' ...' if len(own) > 5 else ''} (skipped: {counts or 'none'})"
            )


def make_loader(dataset: MixtureDataset, num_workers: int = 0) -> DataLoader[Step]:
    """A DataLoader over whole steps (``batch_size=None``: workers build the batches)."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        multiprocessing_context="spawn"
        if num_workers > 0 and torch.cuda.is_initialized()
        else None,
    )
