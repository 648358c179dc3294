"""A run's data from its ``DataSpec``: the checks before anything is built, the steps, and the
metrics of what the steps read.

The training loop calls :func:`check_data` before it builds a model, :func:`build_steps` for its
stream of steps, and :func:`data_metrics` on the :class:`StreamTracker` of the steps consumed;
the sources themselves are the table :data:`~workbench.data.sources.SOURCES`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import polars as pl

from workbench.data.batch import TokenIds
from workbench.data.loader import MixtureDataset, Step, StreamTracker, make_loader
from workbench.data.sources import SOURCES
from workbench.data.stream import expand_shards
from workbench.spec import DataSpec, SpecError

#: The names of the parts a mixture's steps are made of, which a step's metrics are indexed by
#: (``loss/laion``, ``loss/mmc4``, ``loss/mixed``): a part per source, and a sampled mixture's
#: one ``mixed`` part.
PART_NAMES: tuple[str, ...] = (*SOURCES, "mixed")


def check_data(data: DataSpec, world_size: int = 1) -> None:
    """Raises :class:`SpecError` when the mixture reads a source without shards, a shard does
    not exist, or a batch size leaves one of ``world_size`` processes without a row."""
    mixture = data.mixture
    missing = [name for name in mixture.options.sources if not SOURCES[name].shards(data)]
    if missing:
        keys = " and ".join(f"data.{SOURCES[name].shards_field}" for name in missing)
        raise SpecError(f"mixture {mixture.name!r} reads {missing}: set {keys} (brace patterns)")
    for name in mixture.options.sources:
        kind = SOURCES[name]
        check_shards(f"data.{kind.shards_field}", kind.shards(data))
    _check_batch_sizes(mixture.options, world_size)


#: Shards whose tar header is read before a run (the rest are checked as they are read).
_HEADERS_CHECKED = 1000


def check_shards(key: str, pattern: str) -> None:
    """Raises :class:`SpecError` naming ``key`` when a shard of ``pattern`` does not exist, is a
    directory or is not a tar archive."""
    paths = expand_shards(pattern)
    absent = [p for p in paths if not Path(p).exists()]
    if absent:
        glob = " (a brace pattern, not a glob)" if any(c in pattern for c in "*?[") else ""
        raise SpecError(
            f"{key}: {len(absent)} of {len(paths)} shards do not exist{glob}, e.g. {absent[0]}"
        )
    folders = [p for p in paths if Path(p).is_dir()]
    if folders:
        raise SpecError(
            f"{key}: {folders[0]} is a directory; give its .tar shards as a brace pattern, e.g. "
            f"{folders[0].rstrip('/')}/{{000000..000009}}.tar"
        )
    not_tar = [p for p in paths[:_HEADERS_CHECKED] if not tarfile.is_tarfile(p)]
    if not_tar:
        raise SpecError(f"{key}: {not_tar[0]} is not a tar archive (webdataset shards are tars)")


def _check_batch_sizes(mixture: Any, world_size: int) -> None:
    """Every ``*batch_size`` field must give each process at least one row."""
    if not is_dataclass(mixture):
        return
    for f in fields(mixture):
        size = getattr(mixture, f.name)
        if f.name.endswith("batch_size") and isinstance(size, int) and size < world_size:
            raise SpecError(
                f"data.mixture.{f.name}={size} is smaller than the {world_size} processes: "
                "batch sizes are global, so each process needs at least one row"
            )


def build_steps(
    data: DataSpec,
    tokenizer: Any,
    processor: Any,
    *,
    seed: int,
    resume: StreamTracker | None,
) -> Iterator[Step]:
    """The run's infinite stream of steps (whole global batches), from ``data.workers``
    dataloader workers; ``resume`` continues a stream where its tracker's state stopped.

    Args:
        data: what to read and how (the spec's ``data``); check it with :func:`check_data`.
        tokenizer: the model's tokenizer (with the ``<image>`` and ``<|endofchunk|>`` tokens).
        processor: the vision encoder's image transform.
        seed: the run's seed (``train.seed``): shard order, shuffling and per-record draws.
        resume: the stream state of a checkpoint, or None to start from the beginning.
    """
    mixture = data.mixture.options
    sources = {name: SOURCES[name].build(data, tokenizer, processor) for name in mixture.sources}
    shards = {}
    for name in mixture.sources:
        pattern = SOURCES[name].shards(data)
        shards[name] = expand_shards(pattern) if pattern else []
    dataset = MixtureDataset(
        mixture,
        sources,
        shards,
        TokenIds.from_tokenizer(tokenizer),
        seed=seed,
        shuffle_buffer=data.shuffle_buffer,
        resume=resume,
    )
    return iter(make_loader(dataset, data.workers))


def data_metrics(stream: StreamTracker) -> dict[str, float]:
    """``data/realised_mmc4_fraction`` of the samples read so far (once there are any), the
    mean text tokens and images of the MMC4 documents trained on (``data/mmc4/tokens_mean``,
    ``data/mmc4/images_mean``) and the records skipped, by reason, as
    ``data/skipped/<source>/<bad|dropped>/<reason>``."""
    metrics: dict[str, float] = {}
    total = sum(stream.counts.get(name, 0) for name in SOURCES)
    if total:
        metrics["data/realised_mmc4_fraction"] = stream.counts.get("mmc4", 0) / total
    docs = stream.mmc4_tokens.total()
    if docs:
        metrics["data/mmc4/tokens_mean"] = sum(k * v for k, v in stream.mmc4_tokens.items()) / docs
        metrics["data/mmc4/images_mean"] = sum(k * v for k, v in stream.mmc4_images.items()) / docs
    for key, count in stream.skipped.items():
        metrics[f"data/skipped/{key}"] = float(count)
    return metrics


def stream_table(stream: StreamTracker) -> pl.DataFrame:
    """The distributions of the MMC4 documents trained on: rows (``kind`` tokens or images,
    ``value``, ``count``)."""
    rows = [("tokens", k, v) for k, v in sorted(stream.mmc4_tokens.items())]
    rows += [("images", k, v) for k, v in sorted(stream.mmc4_images.items())]
    schema = {"kind": pl.Utf8, "value": pl.Int64, "count": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")
