"""What ``wb list`` shows: every registered component kind, name and options (with defaults),
the axes with their values and baselines, and the experiments."""

from __future__ import annotations

import dataclasses
from typing import Any

from workbench import experiments
from workbench.axes import load_ablations
from workbench.registry import REGISTRIES, RegistryError

# Registries that are machinery, not choices a spec makes.
_INTERNAL = frozenset({"study"})


def kinds() -> list[str]:
    """Every kind ``wb list`` knows, ``experiment`` last."""
    load_ablations()
    return [*sorted(k for k in REGISTRIES if k not in _INTERNAL), "experiment"]


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
            lines.append(f"  {item_name}{_axis(item) if name == 'axis' else options(item)}")
    return lines


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
