"""The sources a mixture draws from, each named once with the fields of ``DataSpec`` it reads.

A source turns one raw record of its shards into an :class:`Example`. :data:`SOURCES` is the
one table of them: the loader takes each stream's seed salt from it, and
``workbench.data.pipeline`` its shards, its options and its class. A new source is one row (and
its fields in ``DataSpec``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from workbench.data.batch import Example
from workbench.data.laion import LaionSource
from workbench.data.mmc4 import MMC4Source
from workbench.spec import DataSpec


class Source(Protocol):
    name: str

    def example(self, sample: dict[str, Any], rng: np.random.Generator) -> Example | None: ...


@dataclass(frozen=True)
class SourceKind:
    """One source: where ``DataSpec`` keeps its shards and options, and what reads it."""

    salt: int  # its streams are seeded 2 * seed + salt: never change one, or every run's data does
    shards_field: str  # the DataSpec field with its brace pattern of shards
    options_field: str  # the DataSpec field with its options
    reader: Callable[..., Source]  # (tokenizer, image processor, options, *components)
    component_fields: tuple[str, ...] = ()  # DataSpec choices passed after the options

    def shards(self, data: DataSpec) -> str:
        """Its brace pattern of shards in ``data`` ("" when unset)."""
        return str(getattr(data, self.shards_field))

    def build(self, data: DataSpec, tokenizer: Any, image_processor: Any) -> Source:
        """Its reader, configured by ``data``."""
        components = [getattr(data, name).options for name in self.component_fields]
        options = getattr(data, self.options_field)
        return self.reader(tokenizer, image_processor, options, *components)


SOURCES: dict[str, SourceKind] = {
    "laion": SourceKind(0, "laion_shards", "laion", LaionSource),
    "mmc4": SourceKind(1, "mmc4_shards", "mmc4", MMC4Source, ("mmc4_filter",)),
}
