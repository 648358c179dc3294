"""The ``mixture`` component: how each optimizer step's data is drawn from LAION and MMC4.

A mixture turns ``take(source) -> Example`` into the parts of one step; each part is a batch with
the loss multiplier its loss is scaled by. ``paired`` is the reference's recipe: one LAION batch
(twice the size) and one MMC4 batch per step, losses weighted 0.2 and 1.0.

:func:`samples_per_step`, :func:`mixture_for_ratio` and :func:`single_source_mixture` let
callers (the ``mixture`` ablation axis) change how a step divides its samples without knowing
the mixtures' field names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from workbench.data.batch import Batch, Example, TokenIds, collate
from workbench.registry import Registry
from workbench.spec import Choice, SpecError


class SourceExhausted(Exception):
    """A one-pass (not resampled) source has no example left."""


@dataclass
class Part:
    name: str  # "laion", "mmc4" or "mixed"
    batch: Batch
    loss_multiplier: float = 1.0


Take = Callable[[str], Example]


class Mixture(Protocol):
    @property
    def sources(self) -> tuple[str, ...]: ...

    def step(self, take: Take, ids: TokenIds, rng: np.random.Generator) -> list[Part]: ...


MIXTURES: Registry[type[Mixture]] = Registry("mixture")


def _take_batch(take: Take, source: str, size: int, partial: bool) -> list[Example]:
    examples: list[Example] = []
    try:
        while len(examples) < size:
            examples.append(take(source))
    except SourceExhausted:
        if not (partial and examples):
            raise
    return examples


@MIXTURES.register("paired")
@dataclass(frozen=True)
class Paired:
    """One batch of each source per step, each loss scaled by its multiplier."""

    laion_batch_size: int = 64
    mmc4_batch_size: int = 32
    laion_loss_multiplier: float = 0.2
    mmc4_loss_multiplier: float = 1.0
    sources: ClassVar[tuple[str, ...]] = ("laion", "mmc4")

    def step(self, take: Take, ids: TokenIds, rng: np.random.Generator) -> list[Part]:
        del rng
        laion = _take_batch(take, "laion", self.laion_batch_size, partial=False)
        mmc4 = _take_batch(take, "mmc4", self.mmc4_batch_size, partial=False)
        return [
            Part("laion", collate(laion, ids), self.laion_loss_multiplier),
            Part("mmc4", collate(mmc4, ids), self.mmc4_loss_multiplier),
        ]


@MIXTURES.register("sampled")
@dataclass(frozen=True)
class Sampled:
    """Each sample of one mixed batch is MMC4 with probability ``mmc4_probability``."""

    batch_size: int = 32
    mmc4_probability: float = 0.5
    sources: ClassVar[tuple[str, ...]] = ("laion", "mmc4")

    def __post_init__(self) -> None:
        if not 0.0 <= self.mmc4_probability <= 1.0:
            raise ValueError(f"mmc4_probability must be in [0, 1], got {self.mmc4_probability}")

    def step(self, take: Take, ids: TokenIds, rng: np.random.Generator) -> list[Part]:
        draws = rng.random(self.batch_size) < self.mmc4_probability
        examples = [take("mmc4" if is_mmc4 else "laion") for is_mmc4 in draws]
        return [Part("mixed", collate(examples, ids))]


@dataclass(frozen=True)
class _Single:
    batch_size: int = 32
    sources: ClassVar[tuple[str, ...]] = ()

    def step(self, take: Take, ids: TokenIds, rng: np.random.Generator) -> list[Part]:
        del rng
        (source,) = self.sources
        return [Part(source, collate(_take_batch(take, source, self.batch_size, True), ids))]


@MIXTURES.register("laion_only")
@dataclass(frozen=True)
class LaionOnly(_Single):
    batch_size: int = 64
    sources: ClassVar[tuple[str, ...]] = ("laion",)


@MIXTURES.register("mmc4_only")
@dataclass(frozen=True)
class MMC4Only(_Single):
    batch_size: int = 32
    sources: ClassVar[tuple[str, ...]] = ("mmc4",)


def samples_per_step(mixture: Choice) -> int:
    """The samples one step of ``mixture`` (a ``data.mixture`` choice) draws from all sources."""
    options = mixture.options
    if isinstance(options, Paired):
        return options.laion_batch_size + options.mmc4_batch_size
    return int(options.batch_size)


def mixture_for_ratio(weights: Mapping[str, int], samples: int) -> Choice:
    """A ``paired`` mixture splitting ``samples`` per step by ``weights`` (``{"laion": 2,
    "mmc4": 1}``), its loss multipliers at their defaults.

    Raises:
        SpecError: when the split leaves a source without a sample.
    """
    if set(weights) != set(Paired.sources):
        raise SpecError(f"mixture weights must name {list(Paired.sources)}, got {list(weights)}")
    laion, mmc4 = weights["laion"], weights["mmc4"]
    laion_size = round(samples * laion / (laion + mmc4))
    if not 0 < laion_size < samples:
        raise SpecError(f"mixture {laion}:{mmc4} leaves a source empty at {samples} samples")
    return Choice.of(
        "mixture", "paired", laion_batch_size=laion_size, mmc4_batch_size=samples - laion_size
    )


def single_source_mixture(source: str, samples: int) -> Choice:
    """The mixture that spends all ``samples`` of a step on ``source`` (``laion_only``, ...)."""
    name = f"{source}_only"
    if name not in MIXTURES:
        single = [n.removesuffix("_only") for n in MIXTURES.names() if n.endswith("_only")]
        raise SpecError(f"no single-source mixture for {source!r}; sources: {single}")
    return Choice.of("mixture", name, batch_size=samples)
