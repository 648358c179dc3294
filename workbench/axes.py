"""Ablation axes: a name, its variants, and how each variant changes a spec.

An axis lives in ``ablations/<name>.py`` and registers itself in :data:`AXES`; a variant is one
decorated function ``spec -> spec``. An axis may also accept open values (``xattn_every=3``,
``mmc4_threshold=0.27``) through ``parse``, and declare a numeric ``span`` that a search can
sample continuously.

    XATTN_EVERY = Axis("xattn_every", "a cross-attention block before every n-th layer", "1")

    @XATTN_EVERY.variant("2")
    def every_2(spec: RunSpec) -> RunSpec:
        return spec.override({"model.xattn_every": 2})
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.project import project_folders
from workbench.registry import Registry
from workbench.spec import RunSpec, SpecError

Variant = Callable[[RunSpec], RunSpec]

AXES: Registry[Axis] = Registry("axis")


@dataclass
class Axis:
    """One question's dimension: named variants, optionally open values and a numeric span.

    Attributes:
        baseline: the value the base experiments already have (its variant changes nothing
            in them, and comparisons are made against runs without any axis).
        parse: turns any other value into a variant (or raises ``SpecError``).
        span: (low, high) for continuous search over ``parse``d numbers.
    """

    name: str
    doc: str
    baseline: str
    parse: Callable[[str], Variant] | None = None
    span: tuple[float, float] | None = None
    variants: dict[str, Variant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        AXES.add(self.name, self)

    def variant(self, value: str) -> Callable[[Variant], Variant]:
        """Decorator registering a named variant."""

        def decorate(fn: Variant) -> Variant:
            if value in self.variants:
                raise SpecError(f"axis {self.name}: variant {value!r} is already registered")
            self.variants[value] = fn
            return fn

        return decorate

    def values(self) -> list[str]:
        return list(self.variants)

    def apply(self, spec: RunSpec, value: object) -> RunSpec:
        """``spec`` changed by the variant ``value`` (a registered one, or an open value)."""
        key = str(value)
        if key in self.variants:
            return self.variants[key](spec)
        if self.parse is None:
            raise SpecError(
                f"axis {self.name}: unknown value {key!r}; valid: {', '.join(self.values())}"
            )
        return self.parse(key)(spec)


_loaded: set[Path] = set()

#: The file of the studies (``workbench.search.load_studies`` runs it): not an axis, and it
#: imports optuna, which a run with ``--ablate`` should not pay for.
STUDIES_FILE = "studies.py"


def ablation_directories(directory: str | Path | None = None) -> list[Path]:
    """``directory``, else the project's ``ablations/`` and the checkout's
    (:mod:`workbench.project`)."""
    return [Path(directory)] if directory is not None else project_folders("ablations")


def load_ablations(directory: str | Path | None = None) -> Registry[Axis]:
    """Runs every ``ablations/*.py`` but ``studies.py`` (of :func:`ablation_directories`) once,
    so their axes are registered; returns :data:`AXES`."""
    for folder in ablation_directories(directory):
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            resolved = path.resolve()
            if resolved in _loaded or path.name.startswith("_") or path.name == STUDIES_FILE:
                continue
            _loaded.add(resolved)
            runpy.run_path(str(path), run_name=f"ablations.{path.stem}")
    return AXES


def apply_all(spec: RunSpec, choices: dict[str, str]) -> RunSpec:
    """``spec`` with each ``axis=value`` of ``choices`` applied in turn."""
    load_ablations()
    for name, value in choices.items():
        spec = AXES.get(name).apply(spec, value)
    return spec
