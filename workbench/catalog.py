"""What ``wb list`` shows: every registered component kind, name and options (with defaults),
the axes with their values and baselines, the studies (one line each), and the experiments.

The studies are loaded by :func:`workbench.study.load_studies`, which runs
``ablations/studies.py`` without importing optuna.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from workbench import experiments
from workbench.registry import REGISTRIES, RegistryError
from workbench.study import load_studies


def kinds() -> list[str]:
    """Every kind ``wb list`` knows (the axes and studies loaded), ``experiment`` last."""
    load_studies()
    return [*sorted(REGISTRIES), "experiment"]


def catalog(kind: str | None = None) -> list[str]:
    """The lines of ``wb list [KIND]``."""
    known = kinds()
    if kind is not None and kind not in known:
        raise RegistryError(f"unknown kind {kind!r}. Known: {', '.join(known)}")
    lines: list[str] = []
    for name in known if kind is None else [kind]:
        if name == "experiment":
            lines.append(f"experiment: {', '.join(experiments.names())}")
            continue
        lines.append(f"{name}:")
        for item_name, item in REGISTRIES[name].items():
            lines.append(f"  {item_name}{_describe(name, item)}")
    return lines


def _describe(kind: str, item: Any) -> str:
    if kind == "axis":
        return _axis(item)
    if kind == "study":
        return f": {item.summary()}"
    return options(item)


def _axis(axis: Any) -> str:
    extra = " + open values" if axis.parse else ""
    span = f", span {axis.span}" if axis.span else ""
    return f": {', '.join(axis.values())}{extra}{span} (baseline {axis.baseline})"


def options(obj: Any) -> str:
    """``(a=1, b=2)`` for a dataclass (or dataclass type) of options, else ``""``; a component
    naming its options (``options_type``) shows those."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # an instance: its values
        values = [
            f"{f.name}={getattr(obj, f.name)!r}"
            for f in dataclasses.fields(obj)
            if not callable(getattr(obj, f.name))
        ]
        return f"({', '.join(values)})"
    if dataclasses.is_dataclass(obj):
        parts = []
        for f in (f for f in dataclasses.fields(obj) if f.init):
            if f.default is not dataclasses.MISSING:
                parts.append(f"{f.name}={f.default!r}")
            elif f.default_factory is not dataclasses.MISSING:
                parts.append(f"{f.name}={f.default_factory()!r}")
            else:
                parts.append(f.name)
        return f"({', '.join(parts)})"
    options_type = getattr(obj, "options_type", None)
    return options(options_type) if options_type is not None else ""
