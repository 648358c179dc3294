"""Experiments: Python files defining ``spec() -> RunSpec`` (and optionally ``prepare(home)``,
which builds what the spec's paths point to, e.g. the shapes world and backbones).

An experiment is named by its file stem in ``experiments/`` (of the user's project,
:mod:`workbench.project`, else of the workbench checkout) or given as a path.
"""

from __future__ import annotations

import difflib
import inspect
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workbench.components  # noqa: F401  (experiment files build specs of registered components)
from workbench.project import project_folders
from workbench.spec import RunSpec
from workbench.train.result import home_dir


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    spec: Callable[..., RunSpec]
    prepare: Callable[..., None] | None

    def build(self, home: str | Path | None = None) -> RunSpec:
        """The experiment's spec (``spec(home=...)`` when its ``spec`` takes a home)."""
        return with_home(self.spec, home)

    def build_inputs(self, home: str | Path | None = None) -> None:
        """Runs ``prepare`` (e.g. writes the shapes world and builds backbones), if it has one."""
        if self.prepare is not None:
            with_home(self.prepare, home)


def with_home(function: Callable[..., Any], home: str | Path | None) -> Any:
    """``function(home=home_dir(home))`` when it takes a ``home``, else ``function()``."""
    if "home" in inspect.signature(function).parameters:
        return function(home=home_dir(home))
    return function()


def directories() -> list[Path]:
    return project_folders("experiments")


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


def openflamingo_spec(preset: str, name: str, **overrides: Any) -> RunSpec:
    """The paper's recipe for a released shape (``openflamingo-3b``/``-4b``/``-9b``) on real
    LAION/MMC4 shards, which the caller gives (``--set data.laion_shards=...``).

    Batch sizes are global per micro-batch: 512 LAION + 256 MMC4 with 8 accumulation steps is
    the reference's effective batch (64 GPUs x 64/32); on 8 GPUs it is its 64/32 per GPU.
    120M LAION samples at 4,096 per step make 29,297 steps.
    """
    from workbench.model.presets import PRESETS

    chosen = PRESETS.get(preset)
    return RunSpec(name=name).override(
        {
            "model.vision": chosen.vision,
            "model.vision_pretrained": chosen.vision_pretrained,
            "model.lm": chosen.lm,
            "model.xattn_every": chosen.xattn_every,
            "data.mixture": "paired",
            "data.mixture.laion_batch_size": 512,
            "data.mixture.mmc4_batch_size": 256,
            "data.workers": 4,
            "train.grad_accum": 8,
            "train.steps": 29_297,
            "train.checkpoint_every": 1000,
            "train.log_every": 50,
            **overrides,
        }
    )


def shapes_spec(size: str, name: str, home: str | Path | None = None, **overrides: Any) -> RunSpec:
    """A run on the shapes world with the shapes backbones of ``size`` (paths under ``home``;
    ``prepare_shapes`` builds them)."""
    from workbench.backbones.shapes import shapes_setup

    setup = shapes_setup(home_dir(home), size)
    backbones = setup.backbones
    return RunSpec(name=name).override(
        {
            "model.vision": str(backbones.vision_config),
            "model.vision_pretrained": str(backbones.vision_checkpoint),
            "model.lm": str(backbones.lm),
            "data.laion_shards": setup.laion,
            "data.mmc4_shards": setup.mmc4,
            "data.laion.hflip_prob": 0.0,
            "data.mmc4.hflip_prob": 0.0,
            "data.mmc4.min_image_bytes": 0,
            "eval.data": str(setup.world / "eval"),
            "eval.validation": str(setup.validation),
            "eval.tasks": ("vqa",),
            **overrides,
        }
    )
