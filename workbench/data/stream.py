"""Deterministic, restorable shard streams, split across ranks and dataloader workers.

Every stream belongs to one *global worker* ``g = rank * workers_per_rank + worker`` of ``G``.

- Resampled (training): the i-th shard of worker g is drawn with replacement by an RNG seeded
  with ``(seed, g, i)``, so the stream is infinite, differs between workers, and is a pure
  function of its position.
- Not resampled (one pass): worker g reads ``shards[g::G]`` in order, so no sample is seen twice.

Within a shard, records may be shuffled with a buffer whose RNG is seeded with ``(seed, g, i)``.
A position is ``(shard i, records consumed j)``: restoring replays shard i from its start and
skips j records, which reproduces the stream exactly without storing any buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import braceexpand
import numpy as np

from workbench.data.formats import BadRecord, iter_tar


@dataclass(frozen=True)
class Position:
    shard: int = 0  # index in this worker's sequence of shards
    record: int = 0  # records of that shard already consumed

    def to_dict(self) -> dict[str, int]:
        return {"shard": self.shard, "record": self.record}


def expand_shards(spec: str | list[str]) -> list[str]:
    """Shard paths from a brace pattern (``data/{000000..000099}.tar``) or a list of them."""
    patterns = [spec] if isinstance(spec, str) else list(spec)
    return [path for pattern in patterns for path in braceexpand.braceexpand(pattern)]


def shard_pattern(paths: Sequence[str | Path]) -> str:
    """A brace pattern naming exactly ``paths`` (a range when they are numbered consecutively in
    one directory, as :func:`~workbench.data.formats.write_shards` writes them)."""
    if not paths:
        raise ValueError("no shards")
    items = [Path(p) for p in paths]
    stems = [p.stem for p in items]
    same_place = len({(p.parent, p.suffix, len(p.stem)) for p in items}) == 1
    if same_place and all(s.isdigit() for s in stems):
        numbers = [int(s) for s in stems]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            first, last = stems[0], stems[-1]
            if len(items) == 1:
                return str(items[0])
            return f"{items[0].parent}/{{{first}..{last}}}{items[0].suffix}"
    if any(c in str(p) for p in items for c in "{},"):
        raise ValueError("shard paths with braces or commas cannot form one pattern")
    return "{" + ",".join(str(p) for p in items) + "}"


class ShardStream:
    """Raw webdataset samples of one source for one global worker.

    Iterating yields ``(sample or BadRecord, position after it)``; a bad tar yields one
    :class:`BadRecord` and moves on to the next shard.
    """

    def __init__(
        self,
        shards: list[str],
        *,
        seed: int,
        worker: int,
        num_workers: int,
        resampled: bool,
        shuffle_buffer: int = 0,
        position: Position = Position(),
    ) -> None:
        if not shards:
            raise ValueError("no shards given")
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker {worker} out of range for {num_workers} workers")
        self.shards = shards
        self.seed = seed
        self.worker = worker
        self.num_workers = num_workers
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.position = position

    def own_shards(self) -> list[str]:
        """The shards this worker may read (all of them when resampling)."""
        return self.shards if self.resampled else self.shards[self.worker :: self.num_workers]

    def shard_at(self, i: int) -> str | None:
        if self.resampled:
            rng = np.random.default_rng([self.seed, self.worker, i])
            return self.shards[int(rng.integers(len(self.shards)))]
        own = self.own_shards()
        return own[i] if i < len(own) else None

    def __iter__(self) -> Iterator[tuple[dict[str, Any] | BadRecord, Position]]:
        i, skip = self.position.shard, self.position.record
        while (path := self.shard_at(i)) is not None:
            rng = np.random.default_rng([self.seed, self.worker, i, 1])
            consumed = 0
            try:
                for sample in _shuffled(iter_tar(path), self.shuffle_buffer, rng):
                    consumed += 1
                    if consumed > skip:
                        yield sample, Position(i, consumed)
            except BadRecord as bad:
                if consumed >= skip:
                    yield bad, Position(i + 1, 0)
            i, skip = i + 1, 0

    def record_rng(self, position: Position, salt: int = 0) -> np.random.Generator:
        """An RNG owned by the record just before ``position`` (augmentation, random drops)."""
        return np.random.default_rng(
            [self.seed, self.worker, position.shard, position.record, salt]
        )


def _shuffled(
    samples: Iterator[dict[str, Any]], buffer_size: int, rng: np.random.Generator
) -> Iterator[dict[str, Any]]:
    if buffer_size <= 1:
        yield from samples
        return
    buffer: list[dict[str, Any]] = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= buffer_size:
            yield buffer.pop(int(rng.integers(len(buffer))))
    while buffer:
        yield buffer.pop(int(rng.integers(len(buffer))))
