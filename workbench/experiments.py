"""Experiments: Python files defining ``spec() -> RunSpec`` (and optionally ``prepare(home)``,
which builds what the spec's paths point to, e.g. the shapes world and backbones).

An experiment is named by its file stem in ``experiments/`` (of the working directory, else of
the workbench checkout) or given as a path.
"""

from __future__ import annotations

import difflib
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.spec import RunSpec

BUILTIN = Path(__file__).resolve().parents[1] / "experiments"


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    spec: Callable[..., RunSpec]
    prepare: Callable[..., None] | None


def directories() -> list[Path]:
    local = Path("experiments").resolve()
    return [local] + ([BUILTIN] if local != BUILTIN else [])


def names() -> list[str]:
    found = {p.stem for d in directories() if d.is_dir() for p in d.glob("*.py")}
    return sorted(n for n in found if not n.startswith("_"))


def load(name_or_path: str | Path) -> Experiment:
    """The experiment ``name_or_path``; an unknown name fails listing the known ones."""
    path = Path(name_or_path)
    if path.suffix != ".py":
        candidates = [d / f"{name_or_path}.py" for d in directories()]
        path = next((c for c in candidates if c.exists()), candidates[0])
    if not path.exists():
        close = difflib.get_close_matches(str(name_or_path), names(), 3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise FileNotFoundError(
            f"no experiment {str(name_or_path)!r}.{hint} Known: {', '.join(names()) or 'none'}"
        )
    namespace: dict[str, Any] = runpy.run_path(str(path))
    spec = namespace.get("spec")
    if not callable(spec):
        raise TypeError(f"{path} defines no spec() function returning a RunSpec")
    prepare = namespace.get("prepare")
    return Experiment(path.stem, path, spec, prepare if callable(prepare) else None)
